/* Scenario "feed": a verdict generator operators can point at any engine.
 *
 * Connects a PUSH socket to --endpoint (a running engine's [feed] bind; the
 * default is the daemon's default, ipc://./var/run/connrep/feed, relative
 * to the working directory) and sends frames of --batch events (feedgen.c:
 * N connectors with GUID ids, a --bad-ratio of them compromised and sending
 * mostly spam and phish, so the engine's rules restrict them) as producer
 * --producer, sequences 1, 2, ... (docs/protocol.md 1.4).
 *
 * Open loop: with --rate R the schedule is fixed in advance (the frame
 * that brings the total to e events is due at start + e / R) and does not
 * slow down when the engine does: a frame that could not be sent on time
 * (the engine's push-back filled the socket's queue) goes out as soon as
 * it can, and the lag behind the schedule is reported, so a slow engine
 * shows as lag instead of as a lower offered rate. --rate 0 sends as fast
 * as the engine takes frames.
 *
 * Ends after --seconds (default 10 unless --events is given), after
 * --events events, or at Ctrl-C; then waits up to 10 s for the queued
 * frames to leave. Progress once a second on stderr; a summary (or JSON)
 * on stdout. Each frame's events carry the time they were built.
 */
#define _DEFAULT_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "bench.h"
#include "feedgen.h"
#include "scenarios.h"
#include "zbase.h"

#define FEED_DEFAULT_ENDPOINT "ipc://./var/run/connrep/feed"
#define FEED_DEFAULT_SECONDS  10.0
#define FEED_LINGER_MS        10000
#define FEED_SEND_WAIT_MS     100

typedef struct feed_cfg {
    bench_common c;
    const char *endpoint;
    double rate;
    uint64_t connectors;
    double bad_ratio;
    uint64_t events;
    uint64_t batch;
    uint64_t producer;
    uint64_t tenants;
} feed_cfg;

static const char feed_description[] =
    "A verdict generator: PUSHes feed frames of --batch events to an engine's\n"
    "feed endpoint (PUSH connects; the default is where connrepd binds on its\n"
    "defaults, relative to the working directory). N connectors with GUID ids;\n"
    "a --bad-ratio of them are compromised and send mostly spam and phish, so\n"
    "the engine restricts them. Frames carry --producer and sequences 1, 2, ...\n"
    "Open loop at --rate events/s (0: as fast as the engine takes them): a slow\n"
    "engine shows as lag behind the schedule, not as a lower offered rate.\n"
    "Runs --seconds (default 10 unless --events is given) or until --events\n"
    "events or Ctrl-C; progress on stderr once a second. The watchdog\n"
    "(--max-seconds, default: the run's length plus 60 s) bounds every run.\n\n"
    "  connrepd --foreground &            # in one terminal, on its defaults\n"
    "  connrep-bench feed --endpoint ipc://./var/run/connrep/feed --seconds 10";

static volatile sig_atomic_t feed_stop;

static void feed_on_signal(int sig)
{
    (void)sig;
    feed_stop = 1;
}

static uint64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_until(uint64_t mono_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(mono_ns / 1000000000u),
                          .tv_nsec = (long)(mono_ns % 1000000000u)};
    while (!feed_stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

typedef struct feed_totals {
    uint64_t frames, events, bytes;
    uint64_t first_seq, last_seq;
    uint64_t start_ns, end_ns;
    double max_lag_ms;
    uint64_t blocked_ns; /* time spent in sends that waited for the engine */
    double flush_s;
    bool interrupted;
    bool stalled; /* the run ended in a wait of a second or more */
} feed_totals;

/* Sends one frame, waiting while the queue is full (or no engine is
 * connected) until `deadline`; false when it could not be sent by then or
 * the run was interrupted. */
static bool feed_send(void *sock, const void *buf, size_t len, uint64_t deadline,
                      const char *endpoint, feed_totals *t)
{
    uint64_t t0 = bench_now_ns(), said = t0;
    for (;;) {
        if (zmq_send(sock, buf, len, 0) == (int)len)
            break;
        if (errno != EAGAIN && errno != EINTR) {
            fprintf(stderr, "connrep-bench feed: send: %s\n", zmq_strerror(errno));
            return false;
        }
        uint64_t now = bench_now_ns();
        if (feed_stop || now >= deadline) {
            t->blocked_ns += now - t0;
            /* Time ran out in a wait: a stall only if it lasted a while
             * (push-back normally clears within milliseconds). */
            t->stalled = !feed_stop && now - t0 >= 1000000000u;
            return false;
        }
        if (now - said >= 1000000000u) {
            said = now;
            bench_progress("feed: waiting for the engine at %s (not connected, or its queue is "
                           "full)",
                           endpoint);
        }
    }
    uint64_t waited = bench_now_ns() - t0;
    if (waited > (uint64_t)FEED_SEND_WAIT_MS * 1000000u / 2)
        t->blocked_ns += waited;
    return true;
}

static int feed_loop(const feed_cfg *cfg, bench_feedgen *g, void *sock, feed_totals *t)
{
    size_t cap = bench_feedgen_frame_cap(g);
    unsigned char *buf = malloc(cap);
    if (buf == NULL)
        return BENCH_EXIT_FAIL;
    uint64_t seq = cfg->producer != 0 ? 1 : 0; /* producer 0: anonymous, unsequenced */
    t->first_seq = seq;
    t->start_ns = bench_now_ns();
    uint64_t end = cfg->c.seconds > 0 ? t->start_ns + (uint64_t)(cfg->c.seconds * 1e9) : UINT64_MAX;
    uint64_t next_report = t->start_ns + 1000000000u;
    uint64_t last_events = 0, last_report = t->start_ns;
    int rc = BENCH_EXIT_OK;
    while (!feed_stop) {
        uint64_t left = cfg->events ? cfg->events - t->events : cfg->batch;
        if (left == 0)
            break;
        uint32_t n = (uint32_t)(left < cfg->batch ? left : cfg->batch);
        uint64_t now = bench_now_ns();
        if (cfg->rate > 0) {
            /* Due when the events before it have had their time. */
            uint64_t due = t->start_ns + (uint64_t)((double)t->events / cfg->rate * 1e9);
            if (due >= end)
                break;
            if (due > now) {
                sleep_until(due);
                if (feed_stop)
                    break;
                now = bench_now_ns();
            }
            double lag = (double)(now - due) / 1e6;
            if (lag > t->max_lag_ms)
                t->max_lag_ms = lag;
        }
        if (now >= end)
            break;
        size_t len = bench_feedgen_traffic(g, buf, cap, cfg->producer, seq, realtime_ms(), n);
        if (len == 0) {
            fprintf(stderr, "connrep-bench feed: cannot build a frame\n");
            rc = BENCH_EXIT_FAIL;
            break;
        }
        if (!feed_send(sock, buf, len, end, cfg->endpoint, t))
            break;
        t->last_seq = seq;
        if (seq != 0)
            seq++;
        t->frames++;
        t->events += n;
        t->bytes += len;
        now = bench_now_ns();
        if (now >= next_report) {
            double el = (double)(now - t->start_ns) / 1e9;
            double recent = (double)(t->events - last_events) / ((double)(now - last_report) / 1e9);
            char target[48] = "as fast as possible";
            if (cfg->rate > 0)
                snprintf(target, sizeof(target), "target %.2fM/s", cfg->rate / 1e6);
            bench_progress("feed: %.2fM events in %.1f s, %.2fM events/s over the last second "
                           "(%s), frames up to sequence %" PRIu64,
                           (double)t->events / 1e6, el, recent / 1e6, target, t->last_seq);
            last_events = t->events;
            last_report = now;
            next_report = now + 1000000000u;
        }
    }
    t->end_ns = bench_now_ns();
    t->interrupted = feed_stop != 0;
    free(buf);
    return rc;
}

static void feed_output(const feed_cfg *cfg, const bench_feedgen *g, const feed_totals *t)
{
    double secs = (double)(t->end_ns - t->start_ns) / 1e9;
    double rate = secs > 0 ? (double)t->events / secs : NAN;
    if (cfg->c.json) {
        bench_machine m;
        bench_machine_get(&m);
        bench_json j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "scenario", "feed");
        bench_json_str(&j, "endpoint", cfg->endpoint);
        bench_json_u64(&j, "producer", cfg->producer);
        bench_json_u64(&j, "first_seq", t->first_seq);
        bench_json_u64(&j, "last_seq", t->last_seq);
        bench_json_u64(&j, "frames", t->frames);
        bench_json_u64(&j, "events", t->events);
        bench_json_u64(&j, "bytes", t->bytes);
        bench_json_num(&j, "seconds", secs, 3);
        bench_json_num(&j, "events_per_s", rate, 0);
        bench_json_num(&j, "target_events_per_s", cfg->rate, 0);
        bench_json_num(&j, "max_lag_ms", cfg->rate > 0 ? t->max_lag_ms : NAN, 3);
        bench_json_num(&j, "blocked_s", (double)t->blocked_ns / 1e9, 3);
        bench_json_num(&j, "flush_s", t->flush_s, 3);
        bench_json_bool(&j, "interrupted", t->interrupted);
        bench_json_bool(&j, "engine_stalled", t->stalled);
        bench_json_u64(&j, "connectors", cfg->connectors);
        bench_json_u64(&j, "bad_connectors", bench_feedgen_bad_count(g));
        bench_json_num(&j, "bad_ratio", cfg->bad_ratio, 4);
        bench_json_u64(&j, "batch", cfg->batch);
        bench_json_u64(&j, "tenants", cfg->tenants);
        bench_json_u64(&j, "seed", cfg->c.seed);
        bench_json_str(&j, "zmq_version", bench_zmq_version());
        bench_json_machine(&j, &m);
        bench_json_end(&j);
        return;
    }
    printf("connrep-bench feed: %" PRIu64 " events in %" PRIu64 " frames to %s in %.2f s: "
           "%.2fM events/s",
           t->events, t->frames, cfg->endpoint, secs, rate / 1e6);
    if (cfg->rate > 0)
        printf(" (target %.2fM/s, max lag %.1f ms)", cfg->rate / 1e6, t->max_lag_ms);
    printf("; producer %" PRIu64 ", sequences %" PRIu64 "..%" PRIu64 "; waited %.2f s for the "
           "engine%s%s\n",
           cfg->producer, t->first_seq, t->last_seq, (double)t->blocked_ns / 1e9,
           t->interrupted ? "; interrupted" : "",
           t->stalled ? "; the engine stopped taking frames" : "");
}

static int feed_main(int argc, char **argv)
{
    feed_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    bench_common_init(&cfg.c, 0.0);
    /* 0: worked out below from --seconds, --events and --rate. */
    cfg.c.max_seconds = 0;
    cfg.c.seconds_help = "run for S seconds (default 10, or no limit with --events)";
    cfg.c.max_seconds_help = "watchdog: abort after T seconds (default the run's length + 70 s; "
                             "1 h with --events and no --rate)";
    cfg.endpoint = FEED_DEFAULT_ENDPOINT;
    cfg.connectors = 100000;
    cfg.bad_ratio = 0.01;
    cfg.batch = 1000;
    cfg.tenants = 16;
    cfg.producer = bench_feedgen_producer_id();
    const bench_opt opts[] = {
        {"endpoint", BENCH_OPT_STR, &cfg.endpoint, "EP",
         "the engine's feed endpoint (PUSH "
         "connects to it)",
         0, 0},
        {"rate", BENCH_OPT_DOUBLE, &cfg.rate, "R",
         "target events/s, open loop; 0 = as fast as "
         "the engine takes them",
         0, 1e10},
        {"connectors", BENCH_OPT_U64, &cfg.connectors, "N", "distinct connectors", 1, 4294967295.0},
        {"bad-ratio", BENCH_OPT_DOUBLE, &cfg.bad_ratio, "F",
         "fraction of compromised connectors (spam/phish)", 0, 1},
        {"events", BENCH_OPT_U64, &cfg.events, "E", "stop after E events (0: no limit)", 0, 1.8e19},
        {"batch", BENCH_OPT_U64, &cfg.batch, "B", "events per frame", 1, 65535},
        {"producer", BENCH_OPT_U64, &cfg.producer, "ID",
         "producer id, 0 = anonymous and unsequenced (default a new random id each run)", 0,
         1.8e19},
        {"tenants", BENCH_OPT_U64, &cfg.tenants, "T", "distinct tenants", 1,
         BENCH_FEEDGEN_TENANTS_MAX},
    };
    const size_t nopts = sizeof(opts) / sizeof(opts[0]);
    if (!bench_opts_parse(&cfg.c, opts, nopts, argc, argv))
        return BENCH_EXIT_USAGE;
    if (cfg.c.help) {
        bench_opts_usage(stdout, "feed", feed_description, &cfg.c, opts, nopts);
        return BENCH_EXIT_OK;
    }
    if (cfg.c.seconds == 0 && cfg.events == 0)
        cfg.c.seconds = FEED_DEFAULT_SECONDS;
    if (cfg.c.max_seconds == 0) {
        double run = cfg.c.seconds;
        if (run == 0)
            run = cfg.rate > 0 ? 2.0 * (double)cfg.events / cfg.rate : 3600.0;
        cfg.c.max_seconds = run + 60.0 + FEED_LINGER_MS / 1000.0;
    }
    bench_progress_quiet(cfg.c.quiet);
    bench_watchdog_arm(cfg.c.max_seconds);

    bench_feedgen g;
    bench_feedgen_opts go = {
        .connectors = cfg.connectors,
        .seed = cfg.c.seed,
        .tenants = cfg.tenants,
        .bad_ratio = cfg.bad_ratio,
        .batch = (uint32_t)cfg.batch,
    };
    if (!bench_feedgen_init(&g, &go, cfg.producer)) {
        fprintf(stderr, "connrep-bench feed: bad generator options\n");
        return BENCH_EXIT_USAGE;
    }
    void *zctx = zmq_ctx_new();
    void *sock = zctx != NULL ? zmq_socket(zctx, ZMQ_PUSH) : NULL;
    if (sock == NULL) {
        fprintf(stderr, "connrep-bench feed: %s\n", zmq_strerror(errno));
        bench_feedgen_fini(&g);
        if (zctx != NULL)
            zmq_ctx_term(zctx);
        return BENCH_EXIT_FAIL;
    }
    int v = FEED_SEND_WAIT_MS;
    (void)zmq_setsockopt(sock, ZMQ_SNDTIMEO, &v, sizeof(v));
    /* Frames are queued only on a live connection: with no engine a send
     * waits (and says so) instead of filling a queue nobody reads, so the
     * events counted as sent are events an engine was connected for. */
    v = 1;
    (void)zmq_setsockopt(sock, ZMQ_IMMEDIATE, &v, sizeof(v));
    v = FEED_LINGER_MS;
    (void)zmq_setsockopt(sock, ZMQ_LINGER, &v, sizeof(v));
    if (zmq_connect(sock, cfg.endpoint) != 0) {
        fprintf(stderr, "connrep-bench feed: connect %s: %s\n", cfg.endpoint, zmq_strerror(errno));
        zmq_close(sock);
        zmq_ctx_term(zctx);
        bench_feedgen_fini(&g);
        return BENCH_EXIT_USAGE;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = feed_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char limit[96];
    if (cfg.events > 0 && cfg.c.seconds > 0)
        snprintf(limit, sizeof(limit), "%" PRIu64 " events or %.1f s", cfg.events, cfg.c.seconds);
    else if (cfg.events > 0)
        snprintf(limit, sizeof(limit), "%" PRIu64 " events", cfg.events);
    else
        snprintf(limit, sizeof(limit), "%.1f s", cfg.c.seconds);
    char target[48] = "as fast as the engine takes them";
    if (cfg.rate > 0)
        snprintf(target, sizeof(target), "%.0f events/s", cfg.rate);
    bench_progress("feed: to %s, %s, %s, %" PRIu64 " connectors (%.2f%% compromised), frames "
                   "of %" PRIu64 ", producer %" PRIu64,
                   cfg.endpoint, limit, target, cfg.connectors, cfg.bad_ratio * 100, cfg.batch,
                   cfg.producer);

    feed_totals t;
    memset(&t, 0, sizeof(t));
    int rc = feed_loop(&cfg, &g, sock, &t);
    uint64_t f0 = bench_now_ns();
    if (t.frames > 0)
        bench_progress("feed: %" PRIu64 " events sent; flushing (at most %d s)", t.events,
                       FEED_LINGER_MS / 1000);
    zmq_close(sock);
    zmq_ctx_term(zctx);
    t.flush_s = (double)(bench_now_ns() - f0) / 1e9;
    if (t.frames == 0 && !t.interrupted) {
        fprintf(stderr, "connrep-bench feed: nothing was sent: is an engine bound to %s?\n",
                cfg.endpoint);
        rc = BENCH_EXIT_FAIL;
    }
    if (rc == BENCH_EXIT_OK)
        feed_output(&cfg, &g, &t);
    bench_feedgen_fini(&g);
    return rc;
}

const bench_scenario bench_scenario_feed = {
    .name = "feed",
    .summary = "a verdict generator to point at any engine (open loop, target rate)",
    .run = feed_main,
};
