/* Scenario "mixed": a relay fleet and a feed against one daemon at once.
 *
 * Set-up. Starts connrepd (daemon.c) and fills it with N connectors through
 * its feed (feedgen.c), exactly as the lookup scenario does.
 *
 * Measured. In --steps steps of --seconds each, the offered lookup rate
 * climbs from L/steps to L (--lookups-per-s) while a feed thread sends
 * traffic frames at a fixed E events/s (--events-per-s). K client threads
 * (--clients), one libconnrep client each on --transport, share the lookup
 * rate equally.
 *
 * Open loop. Each client's requests are scheduled in advance, one every
 * K / L seconds; a request's latency is measured from its scheduled send
 * time, not from when it was really sent. A client that falls behind (a
 * slow reply, a descheduled thread) sends its late requests at once, and
 * each of them counts the time it waited for its turn: a closed-loop bench
 * would instead send fewer requests during a stall and hide it (coordinated
 * omission). The service time (from the real send) is reported beside it,
 * so the difference is visible.
 *
 * Popularity. The connector of each request is drawn from a Zipf
 * distribution over the N connectors with exponent --skew (0: uniform):
 * rank r is chosen with probability proportional to 1 / (r + 1)^skew, and
 * rank r is connector r (whose id is a hash, so popular connectors are
 * spread over the table).
 */
#define _DEFAULT_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "bench.h"
#include "connrep.h"
#include "daemon.h"
#include "feedgen.h"
#include "hist.h"
#include "scenarios.h"
#include "zbase.h"

#define MIXED_STEPS_MAX   16
#define MIXED_CLIENTS_MAX 64
#define MIXED_TIMEOUT_MS  2000

typedef struct mixed_cfg {
    bench_common c;
    uint64_t connectors;
    uint64_t shards;
    uint64_t clients;
    uint64_t steps;
    uint64_t batch; /* feed events per frame */
    double lookups_per_s;
    double events_per_s;
    double skew;
    double bad_ratio;
    const char *transport;
} mixed_cfg;

static const char mixed_description[] =
    "Starts connrepd, fills it with N connectors, then runs a relay fleet of\n"
    "--clients threads (one libconnrep client each, on --transport) doing\n"
    "lookups at an offered rate that climbs in --steps steps up to\n"
    "--lookups-per-s, while a feed thread sends traffic at --events-per-s.\n"
    "Open loop: every request has a scheduled send time and its latency is\n"
    "measured from it, so a stall is not hidden by sending less (coordinated\n"
    "omission). Connector popularity is Zipf with exponent --skew (0 =\n"
    "uniform). Reports, per step, the offered and achieved lookup rates,\n"
    "latency p50/p90/p99/p99.9/max (and the service time from the real send),\n"
    "and the feed's offered and applied event rates. The daemon is always\n"
    "stopped.";

/* ---- Zipf ------------------------------------------------------------------------ */

/* The cumulative distribution over ranks 0..n-1, or NULL for uniform. */
typedef struct mixed_zipf {
    double *cdf;
    uint64_t n;
} mixed_zipf;

static bool zipf_init(mixed_zipf *z, uint64_t n, double skew)
{
    z->n = n;
    z->cdf = NULL;
    if (skew <= 0)
        return true;
    z->cdf = malloc(n * sizeof(*z->cdf));
    if (z->cdf == NULL)
        return false;
    double sum = 0;
    for (uint64_t r = 0; r < n; r++) {
        sum += pow((double)(r + 1), -skew);
        z->cdf[r] = sum;
    }
    for (uint64_t r = 0; r < n; r++)
        z->cdf[r] /= sum;
    return true;
}

static uint64_t zipf_draw(const mixed_zipf *z, uint64_t *rng)
{
    uint64_t r = bench_rand(rng);
    if (z->cdf == NULL)
        return bench_below(r, z->n);
    double u = (double)(r >> 11) * 0x1.0p-53;
    uint64_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The share of draws that land on the 1 % most popular connectors. */
static double zipf_top1(const mixed_zipf *z)
{
    uint64_t k = z->n / 100 ? z->n / 100 : 1;
    return z->cdf ? z->cdf[k - 1] : (double)k / (double)z->n;
}

/* ---- Threads ---------------------------------------------------------------------- */

static void sleep_until_ns(uint64_t mono_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(mono_ns / 1000000000u),
                          .tv_nsec = (long)(mono_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

typedef struct mixed_shared {
    const mixed_cfg *cfg;
    const char *ids; /* N ids of BENCH_GUID_LEN bytes */
    mixed_zipf zipf;
    double top1; /* zipf_top1(), kept for the output (the CDF is freed first) */
    char endpoint[256];
} mixed_shared;

typedef struct mixed_client {
    pthread_t thread;
    const mixed_shared *sh;
    connrep_client *client; /* opened and closed by the main thread */
    uint64_t rng;
    uint64_t start_ns, end_ns;
    double interval_ns;
    bench_hist lat;     /* ps from the scheduled send to the reply */
    bench_hist service; /* ps from the real send to the reply */
    uint64_t sent, done, errors, restricted;
    int first_error;
    uint64_t last_ns;
} mixed_client;

static void *client_main(void *arg)
{
    mixed_client *c = arg;
    const char *ids = c->sh->ids;
    for (uint64_t k = 0;; k++) {
        uint64_t due = c->start_ns + (uint64_t)((double)k * c->interval_ns);
        if (due >= c->end_ns)
            break;
        uint64_t now = bench_now_ns();
        if (now < due)
            sleep_until_ns(due);
        uint64_t i = zipf_draw(&c->sh->zipf, &c->rng);
        connrep_result res;
        uint64_t t0 = bench_now_ns();
        int rc = connrep_lookup(c->client, ids + i * BENCH_GUID_LEN, BENCH_GUID_LEN, &res);
        uint64_t t1 = bench_now_ns();
        c->sent++;
        c->last_ns = t1;
        if (rc != 0) {
            if (c->errors++ == 0)
                c->first_error = rc;
            continue;
        }
        c->done++;
        c->restricted += res.state == CONNREP_STATE_RESTRICTED;
        bench_hist_record(&c->lat, (t1 - due) * 1000u);
        bench_hist_record(&c->service, (t1 - t0) * 1000u);
    }
    return NULL;
}

typedef struct mixed_feed {
    pthread_t thread;
    const mixed_cfg *cfg;
    bench_feedgen g;
    void *sock;
    unsigned char *buf;
    size_t cap;
    uint64_t producer, seq;
    uint64_t start_ns, end_ns;
    uint64_t events, frames, last_ns;
    double max_lag_ms;
    bool failed;
} mixed_feed;

static void *feed_main(void *arg)
{
    mixed_feed *f = arg;
    const double rate = f->cfg->events_per_s;
    const uint32_t batch = (uint32_t)f->cfg->batch;
    uint64_t sent = 0;
    for (;;) {
        uint64_t due = f->start_ns + (uint64_t)((double)sent / rate * 1e9);
        if (due >= f->end_ns)
            break;
        uint64_t now = bench_now_ns();
        if (now < due)
            sleep_until_ns(due);
        else if ((double)(now - due) / 1e6 > f->max_lag_ms)
            f->max_lag_ms = (double)(now - due) / 1e6;
        size_t len = bench_feedgen_traffic(&f->g, f->buf, f->cap, f->producer, f->seq, 0, batch);
        if (len == 0 || !bench_push_send(f->sock, f->buf, len, NULL)) {
            f->failed = true;
            break;
        }
        f->seq++;
        f->frames++;
        sent += batch;
    }
    f->events += sent;
    f->last_ns = bench_now_ns();
    return NULL;
}

/* ---- Steps ------------------------------------------------------------------------ */

typedef struct mixed_step {
    double offered, achieved; /* lookups/s */
    bench_hist_summary lat, service;
    uint64_t errors, restricted;
    int first_error;
    double feed_offered, feed_sent, feed_applied; /* events/s */
    double feed_max_lag_ms;
} mixed_step;

typedef struct mixed_ctx {
    const mixed_cfg *cfg;
    mixed_shared sh;
    bench_feedgen g; /* the fill's; its ids are shared by the clients */
    mixed_client *clients;
    mixed_feed feed;
    mixed_step steps[MIXED_STEPS_MAX];
    bench_hist *lat, *service; /* merged, per step */
    uint64_t fill_events;
    double fill_s;
    uint64_t restricted_fill;
} mixed_ctx;

static bool run_step(mixed_ctx *x, bench_daemon *d, uint64_t s)
{
    const mixed_cfg *cfg = x->cfg;
    mixed_step *st = &x->steps[s];
    st->offered = cfg->lookups_per_s * (double)(s + 1) / (double)cfg->steps;
    uint64_t applied0 = 0, applied1 = 0;
    if (!bench_daemon_stat(d, "events_applied", &applied0))
        return false;
    /* Everyone starts on the same schedule, a little ahead so every thread
     * is up before its first send. */
    uint64_t start = bench_now_ns() + 50000000u;
    uint64_t end = start + (uint64_t)(cfg->c.seconds * 1e9);
    for (uint64_t k = 0; k < cfg->clients; k++) {
        mixed_client *c = &x->clients[k];
        bench_hist_init(&c->lat);
        bench_hist_init(&c->service);
        c->sent = c->done = c->errors = c->restricted = 0;
        c->start_ns = start + (uint64_t)((double)k * 1e9 / st->offered); /* staggered */
        c->end_ns = end;
        c->interval_ns = (double)cfg->clients * 1e9 / st->offered;
        c->last_ns = start;
    }
    x->feed.start_ns = start;
    x->feed.end_ns = cfg->events_per_s > 0 ? end : start;
    x->feed.events = x->feed.frames = 0;
    x->feed.max_lag_ms = 0;
    uint64_t started = 0;
    bool ok = pthread_create(&x->feed.thread, NULL, feed_main, &x->feed) == 0;
    for (; ok && started < cfg->clients; started++)
        ok = pthread_create(&x->clients[started].thread, NULL, client_main, &x->clients[started]) ==
             0;
    for (uint64_t k = 0; k < started; k++)
        pthread_join(x->clients[k].thread, NULL);
    if (started > 0 || ok)
        pthread_join(x->feed.thread, NULL);
    if (!ok) {
        fprintf(stderr, "connrep-bench mixed: cannot start threads\n");
        return false;
    }
    uint64_t last = start;
    bench_hist_init(x->lat);
    bench_hist_init(x->service);
    st->errors = st->restricted = 0;
    uint64_t done = 0;
    for (uint64_t k = 0; k < cfg->clients; k++) {
        mixed_client *c = &x->clients[k];
        bench_hist_merge(x->lat, &c->lat);
        bench_hist_merge(x->service, &c->service);
        if (c->errors && st->errors == 0)
            st->first_error = c->first_error;
        st->errors += c->errors;
        st->restricted += c->restricted;
        done += c->done;
        if (c->last_ns > last)
            last = c->last_ns;
    }
    bench_hist_summarize(x->lat, &st->lat);
    bench_hist_summarize(x->service, &st->service);
    /* Achieved: completions over the time from the first scheduled send to
     * the last reply (a fleet that falls behind takes longer). */
    st->achieved = (double)done / ((double)(last - start) / 1e9);
    double feed_s = (double)(end - start) / 1e9;
    st->feed_offered = cfg->events_per_s;
    st->feed_sent = (double)x->feed.events / feed_s;
    st->feed_max_lag_ms = x->feed.max_lag_ms;
    if (x->feed.failed) {
        fprintf(stderr, "connrep-bench mixed: the feed could not send\n");
        return false;
    }
    uint64_t t_end = bench_now_ns();
    /* The applied rate over the same window: what the engine kept up with. */
    bench_daemon_stat(d, "events_applied", &applied1);
    st->feed_applied = (double)(applied1 - applied0) / ((double)(t_end - start) / 1e9);
    bench_progress("step %" PRIu64 " of %" PRIu64 ": offered %.0f/s achieved %.0f/s, p50 %.1f us "
                   "p99 %.1f us p99.9 %.1f us max %.1f us; feed %.0f events/s",
                   s + 1, cfg->steps, st->offered, st->achieved, st->lat.p50 / 1e6,
                   st->lat.p99 / 1e6, st->lat.p999 / 1e6, st->lat.max / 1e6, st->feed_sent);
    return true;
}

/* ---- Output ---------------------------------------------------------------------------- */

enum mixed_field {
    F_OFFERED,
    F_ACHIEVED,
    F_P50,
    F_P90,
    F_P99,
    F_P999,
    F_MAX,
    F_SVC_P50,
    F_SVC_P99,
    F_SVC_P999,
    F_FEED_SENT,
    F_FEED_APPLIED,
    F_N
};

static double step_field(const mixed_step *st, int f)
{
    switch (f) {
    case F_OFFERED:
        return st->offered;
    case F_ACHIEVED:
        return st->achieved;
    case F_P50:
        return st->lat.p50 / 1e6;
    case F_P90:
        return st->lat.p90 / 1e6;
    case F_P99:
        return st->lat.p99 / 1e6;
    case F_P999:
        return st->lat.p999 / 1e6;
    case F_MAX:
        return st->lat.max / 1e6;
    case F_SVC_P50:
        return st->service.p50 / 1e6;
    case F_SVC_P99:
        return st->service.p99 / 1e6;
    case F_SVC_P999:
        return st->service.p999 / 1e6;
    case F_FEED_SENT:
        return st->feed_sent;
    case F_FEED_APPLIED:
        return st->feed_applied;
    }
    return NAN;
}

static void mixed_json(const mixed_ctx *x, const bench_daemon *d, const bench_machine *m,
                       double run_s)
{
    static const char *const names[F_N] = {"offered_lookups_per_s",
                                           "achieved_lookups_per_s",
                                           "p50_us",
                                           "p90_us",
                                           "p99_us",
                                           "p999_us",
                                           "max_us",
                                           "service_p50_us",
                                           "service_p99_us",
                                           "service_p999_us",
                                           "feed_sent_events_per_s",
                                           "feed_applied_events_per_s"};
    const mixed_cfg *cfg = x->cfg;
    const mixed_step *top = &x->steps[cfg->steps - 1];
    bench_json j;
    bench_json_begin(&j, stdout);
    bench_json_str(&j, "scenario", "mixed");
    /* The full offered rate (the last step) at the top level. */
    for (int f = 0; f < F_N; f++)
        bench_json_num(&j, names[f], step_field(top, f), f < F_P50 || f >= F_FEED_SENT ? 0 : 2);
    bench_json_num(&j, "feed_offered_events_per_s", cfg->events_per_s, 0);
    bench_json_num(&j, "feed_max_lag_ms", top->feed_max_lag_ms, 3);
    bench_json_u64(&j, "errors", top->errors);
    bench_json_str(&j, "first_error", top->errors ? connrep_err_name(top->first_error) : "none");
    bench_json_u64(&j, "results_restricted", top->restricted);
    bench_json_object_begin(&j, "steps");
    double v[MIXED_STEPS_MAX];
    for (int f = 0; f < F_N; f++) {
        for (uint64_t s = 0; s < cfg->steps; s++)
            v[s] = step_field(&x->steps[s], f);
        bench_json_nums(&j, names[f], v, cfg->steps, f < F_P50 || f >= F_FEED_SENT ? 0 : 2);
    }
    bench_json_object_end(&j);
    bench_json_str(&j, "method",
                   "open loop: latency from each request's scheduled send time; service "
                   "time from the real send");
    bench_json_str(&j, "transport", cfg->transport);
    bench_json_str(&j, "endpoint", x->sh.endpoint);
    bench_json_u64(&j, "clients", cfg->clients);
    bench_json_num(&j, "skew", cfg->skew, 3);
    bench_json_num(&j, "top1pct_share", x->sh.top1, 4);
    bench_json_u64(&j, "connectors", cfg->connectors);
    bench_json_u64(&j, "capacity", d->capacity);
    bench_json_u64(&j, "shards", d->shards);
    bench_json_u64(&j, "feed_batch", cfg->batch);
    bench_json_u64(&j, "steps_count", cfg->steps);
    bench_json_num(&j, "seconds_per_step", cfg->c.seconds, 2);
    bench_json_u64(&j, "seed", cfg->c.seed);
    bench_json_u64(&j, "fill_events", x->fill_events);
    bench_json_num(&j, "fill_s", x->fill_s, 3);
    bench_json_str(&j, "zmq_version", bench_zmq_version());
    bench_json_machine(&j, m);
    bench_json_num(&j, "run_s", run_s, 1);
    bench_json_end(&j);
}

static void mixed_human(const mixed_ctx *x, const bench_daemon *d, const bench_machine *m)
{
    const mixed_cfg *cfg = x->cfg;
    printf("connrep-bench mixed: %" PRIu64 " connectors (capacity %" PRIu64 "), %" PRIu64
           " clients on %s, skew %.2f (top 1%% get %.0f%%), feed %.0f events/s, %.1f s per step\n",
           cfg->connectors, d->capacity, cfg->clients, cfg->transport, cfg->skew, x->sh.top1 * 100,
           cfg->events_per_s, cfg->c.seconds);
    printf("%10s %10s | %8s %8s %8s %8s %9s | %8s %8s | %10s %10s\n", "offered/s", "achieved/s",
           "p50 us", "p90", "p99", "p99.9", "max", "svc p50", "svc p99", "feed sent", "applied");
    for (uint64_t s = 0; s < cfg->steps; s++) {
        const mixed_step *st = &x->steps[s];
        printf("%10.0f %10.0f | %8.1f %8.1f %8.1f %8.1f %9.1f | %8.1f %8.1f | %10.0f %10.0f\n",
               st->offered, st->achieved, st->lat.p50 / 1e6, st->lat.p90 / 1e6, st->lat.p99 / 1e6,
               st->lat.p999 / 1e6, st->lat.max / 1e6, st->service.p50 / 1e6, st->service.p99 / 1e6,
               st->feed_sent, st->feed_applied);
    }
    printf("open loop: latency from the scheduled send (svc: from the real send)\n");
    printf("machine: %s, %u cores, kernel %s, ZeroMQ %s\n", m->cpu_model, m->cores, m->kernel,
           bench_zmq_version());
}

/* ---- The scenario ------------------------------------------------------------------------ */

static bool mixed_setup(mixed_ctx *x, bench_daemon *d)
{
    const mixed_cfg *cfg = x->cfg;
    bench_feedgen_opts go = {
        .connectors = cfg->connectors,
        .seed = cfg->c.seed,
        .tenants = 16,
        .bad_ratio = cfg->bad_ratio,
        .batch = (uint32_t)cfg->batch,
    };
    if (!bench_feedgen_init(&x->g, &go, 0) || x->g.ids == NULL ||
        !bench_feedgen_init(&x->feed.g, &go, 1)) {
        fprintf(stderr, "connrep-bench mixed: cannot set the generators up\n");
        return false;
    }
    x->sh.cfg = cfg;
    x->sh.ids = x->g.ids;
    if (!zipf_init(&x->sh.zipf, cfg->connectors, cfg->skew))
        return false;
    x->sh.top1 = zipf_top1(&x->sh.zipf);
    x->clients = calloc(cfg->clients, sizeof(*x->clients));
    x->lat = malloc(sizeof(*x->lat));
    x->service = malloc(sizeof(*x->service));
    x->feed.cap = bench_feedgen_frame_cap(&x->feed.g);
    x->feed.buf = malloc(x->feed.cap);
    if (x->clients == NULL || x->lat == NULL || x->service == NULL || x->feed.buf == NULL) {
        fprintf(stderr, "connrep-bench mixed: out of memory\n");
        return false;
    }
    if (!bench_daemon_init(d))
        return false;
    bench_daemon_opts dopts = {
        .connectors = cfg->connectors,
        .shards = (unsigned)cfg->shards,
        .lookup_tcp = strcmp(cfg->transport, "tcp") == 0,
    };
    bench_progress("mixed: starting %s", bench_daemon_binary());
    if (!bench_daemon_start(d, &dopts))
        return false;
    x->feed.producer = bench_feedgen_producer_id();
    x->feed.seq = 1;
    bench_progress("fill: %" PRIu64 " connectors", cfg->connectors);
    if (!bench_daemon_fill(d, &x->g, x->feed.producer, &x->feed.seq, &x->fill_events, &x->fill_s))
        return false;
    uint64_t published;
    double waited;
    if (!bench_daemon_settle(d, 1.0, 120.0, &published, &waited))
        fprintf(stderr, "connrep-bench mixed: the events thread is still publishing; measuring "
                        "anyway\n");
    const char *ep = strcmp(cfg->transport, "tcp") == 0   ? d->lookup_tcp_ep
                     : strcmp(cfg->transport, "shm") == 0 ? d->shm_ep
                                                          : d->lookup_ep;
    snprintf(x->sh.endpoint, sizeof(x->sh.endpoint), "%s", ep);
    for (uint64_t k = 0; k < cfg->clients; k++) {
        mixed_client *c = &x->clients[k];
        c->sh = &x->sh;
        c->rng = bench_mix64(cfg->c.seed ^ (0x6d69786564ull + k)); /* "mixed" + k */
        c->client = connrep_open(ep, MIXED_TIMEOUT_MS);
        if (c->client == NULL) {
            fprintf(stderr, "connrep-bench mixed: connrep_open(%s): %s\n", ep, strerror(errno));
            return false;
        }
        /* Warm: connection up before the first timed request. */
        connrep_result res;
        for (int w = 0; w < 20; w++)
            (void)connrep_lookup(c->client, x->g.ids, BENCH_GUID_LEN, &res);
    }
    x->feed.cfg = cfg;
    x->feed.sock = bench_daemon_feed_socket(d);
    return x->feed.sock != NULL;
}

static void mixed_free(mixed_ctx *x)
{
    if (x->clients != NULL)
        for (uint64_t k = 0; k < x->cfg->clients; k++)
            connrep_close(&x->clients[k].client);
    if (x->feed.sock != NULL)
        zmq_close(x->feed.sock);
    free(x->clients);
    free(x->lat);
    free(x->service);
    free(x->feed.buf);
    free(x->sh.zipf.cdf);
    bench_feedgen_fini(&x->feed.g);
    bench_feedgen_fini(&x->g);
}

static int mixed_main(int argc, char **argv)
{
    mixed_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    bench_common_init(&cfg.c, 3.0);
    cfg.c.seconds_help = "length of each step";
    cfg.connectors = 1000000;
    cfg.shards = 2;
    cfg.clients = 4;
    cfg.steps = 4;
    cfg.batch = 100;
    cfg.lookups_per_s = 40000;
    cfg.events_per_s = 100000;
    cfg.skew = 0.99;
    cfg.bad_ratio = 0.001;
    cfg.transport = "ipc";
    const bench_opt opts[] = {
        {"connectors", BENCH_OPT_U64, &cfg.connectors, "N", "connectors filled and looked up", 1000,
         16777216.0},
        {"shards", BENCH_OPT_U64, &cfg.shards, "K", "the daemon's [engine] shards (power of two)",
         1, 64},
        {"clients", BENCH_OPT_U64, &cfg.clients, "K", "client threads (relay workers)", 1,
         MIXED_CLIENTS_MAX},
        {"lookups-per-s", BENCH_OPT_DOUBLE, &cfg.lookups_per_s, "L",
         "offered lookup rate of the last step, all clients together", 1, 1e8},
        {"events-per-s", BENCH_OPT_DOUBLE, &cfg.events_per_s, "E",
         "feed rate during every step (0: no feed)", 0, 1e8},
        {"steps", BENCH_OPT_U64, &cfg.steps, "S", "offered-load steps: L/S, 2L/S, ..., L", 1,
         MIXED_STEPS_MAX},
        {"skew", BENCH_OPT_DOUBLE, &cfg.skew, "Z",
         "Zipf exponent of connector popularity (0 = "
         "uniform)",
         0, 5},
        {"batch", BENCH_OPT_U64, &cfg.batch, "B", "feed events per frame", 4, 65535},
        {"bad-ratio", BENCH_OPT_DOUBLE, &cfg.bad_ratio, "F", "fraction of compromised connectors",
         0, 1},
        {"transport", BENCH_OPT_STR, &cfg.transport, "T", "lookup path: ipc, tcp or shm", 0, 0},
    };
    const size_t nopts = sizeof(opts) / sizeof(opts[0]);
    if (!bench_opts_parse(&cfg.c, opts, nopts, argc, argv))
        return BENCH_EXIT_USAGE;
    if (cfg.c.help) {
        bench_opts_usage(stdout, "mixed", mixed_description, &cfg.c, opts, nopts);
        return BENCH_EXIT_OK;
    }
    if ((cfg.shards & (cfg.shards - 1)) != 0 ||
        (strcmp(cfg.transport, "ipc") != 0 && strcmp(cfg.transport, "tcp") != 0 &&
         strcmp(cfg.transport, "shm") != 0)) {
        fprintf(stderr, "connrep-bench mixed: --shards must be a power of two and --transport "
                        "ipc, tcp or shm\n");
        return BENCH_EXIT_USAGE;
    }
    bench_progress_quiet(cfg.c.quiet);
    bench_watchdog_arm(cfg.c.max_seconds);
    uint64_t run_start = bench_now_ns();
    bench_machine m;
    bench_machine_get(&m);
    int rc = BENCH_EXIT_FAIL;
    mixed_ctx *x = calloc(1, sizeof(*x));
    bench_daemon *d = calloc(1, sizeof(*d));
    if (x == NULL || d == NULL)
        goto out;
    x->cfg = &cfg;
    if (!mixed_setup(x, d))
        goto out;
    for (uint64_t s = 0; s < cfg.steps; s++)
        if (!run_step(x, d, s))
            goto out;
    rc = BENCH_EXIT_OK;
out:
    if (x != NULL)
        mixed_free(x);
    if (d != NULL) {
        if (d->pid > 0)
            bench_progress("mixed: stopping connrepd");
        int st = bench_daemon_stop(d);
        if (rc == BENCH_EXIT_OK && st != 0) {
            fprintf(stderr, "connrep-bench mixed: connrepd exited with status %d\n", st);
            rc = BENCH_EXIT_FAIL;
        }
        if (rc == BENCH_EXIT_OK) {
            double run_s = (double)(bench_now_ns() - run_start) / 1e9;
            bench_progress("done in %.1f s", run_s);
            if (cfg.c.json)
                mixed_json(x, d, &m, run_s);
            else
                mixed_human(x, d, &m);
        }
    }
    free(d);
    free(x);
    return rc;
}

const bench_scenario bench_scenario_mixed = {
    .name = "mixed",
    .summary = "a relay fleet at a target lookup rate while the feed runs (open loop, Zipf)",
    .run = mixed_main,
};
