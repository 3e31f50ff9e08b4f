/* Integration: lookups against the real connrepd, through libconnrep.
 *
 * Verdicts go in through the daemon's feed socket (the harness's PUSH); the
 * answers come back through connrep_open("ipc://…") (the lookup server)
 * and connrep_open("shm:/…") (the daemon's shared table), and the two must
 * agree. Every test gets a fresh daemon from the harness, which stops it in
 * .fini whatever happened. Waits poll with a deadline; nothing sleeps a
 * fixed time.
 */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "connrep.h"
#include "harness.h"

static crp_harness H;

static void setup(void)
{
    cr_assert(eq(int, crp_harness_init(&H), 0));
    /* Room for the 1000-id batch without evicting anything. */
    crp_harness_set(&H, "engine", "max_connectors", "8192");
    crp_harness_set(&H, "scoring", "malware", "3");
    cr_assert(eq(int, crp_harness_start(&H), 0), "connrepd did not start");
}

static void teardown(void)
{
    crp_harness_fini(&H);
}

TestSuite(lookup, .init = setup, .fini = teardown, .timeout = 90);

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
    nanosleep(&ts, NULL);
}

static connrep_client *open_ipc(void)
{
    connrep_client *c = connrep_open(H.lookup_ep, 2000);
    cr_assert(ne(ptr, c, NULL), "connrep_open(%s)", H.lookup_ep);
    return c;
}

static connrep_client *open_shm(void)
{
    char ep[80];
    snprintf(ep, sizeof ep, "shm:%s", H.shm_name);
    connrep_client *c = connrep_open(ep, 0);
    cr_assert(ne(ptr, c, NULL), "connrep_open(%s)", ep);
    return c;
}

/* Polls until `id` reaches `state` through client c (the feed is applied
 * asynchronously) or the deadline passes; returns the last result's rc. */
static int wait_state(connrep_client *c, const char *id, int state, connrep_result *r,
                      int timeout_ms)
{
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    int rc;
    for (;;) {
        rc = connrep_lookup(c, id, strlen(id), r);
        if ((rc == 0 && r->state == state) || mono_ms() >= deadline)
            return rc;
        pause_ms(2);
    }
}

/* Three malware verdicts restrict a connector (threshold 3). */
static void feed_malware(const char *id)
{
    cr_assert(eq(int, crp_harness_feed_same(&H, id, CRP_FEED_VERDICT_MALWARE, 1, 0, 3), 0));
}

static void feed_clean(const char *id, size_t n)
{
    cr_assert(eq(int, crp_harness_feed_same(&H, id, 0, 1, 0, n), 0));
}

static void check_restricted(const connrep_result *r, uint64_t t0, uint64_t t1)
{
    cr_assert(eq(int, r->state, CONNREP_STATE_RESTRICTED));
    cr_assert(ne(uint, r->reasons & CONNREP_REASON_MALWARE, 0));
    cr_assert(ge(u64, r->since_ms, t0));
    cr_assert(le(u64, r->since_ms, t1));
    cr_assert(ne(ptr, (void *)r->smtp_text, NULL));
    cr_assert(eq(str, (char *)r->smtp_text,
                 "550 5.7.711 Access denied, bad inbound connector. AS(2204)"));
}

Test(lookup, restriction_seen_over_ipc_and_shm)
{
    connrep_client *z = open_ipc();
    connrep_client *m = open_shm();
    connrep_result r;
    cr_assert(eq(int, connrep_lookup(z, "bad-1", 5, &r), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_UNKNOWN));
    cr_assert(eq(int, connrep_lookup(m, "bad-1", 5, &r), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_UNKNOWN));

    uint64_t t0 = crp_harness_now_ms();
    feed_malware("bad-1");
    cr_assert(eq(int, wait_state(z, "bad-1", CONNREP_STATE_RESTRICTED, &r, 10000), 0));
    uint64_t t1 = crp_harness_now_ms();
    check_restricted(&r, t0, t1);

    /* The shared table says the same, at once (it is the same table). */
    connrep_result s;
    cr_assert(eq(int, connrep_lookup(m, "bad-1", 5, &s), 0));
    check_restricted(&s, t0, t1);
    cr_assert(eq(uint, s.reasons, r.reasons));
    cr_assert(eq(u64, s.since_ms, r.since_ms));

    /* The raw wire agrees (with the text requested on the wire). */
    crp_reply_result raw;
    char text[128];
    cr_assert(eq(int, crp_harness_lookup(&H, "bad-1", &raw, text, sizeof text), 0));
    cr_assert(eq(u8, raw.state, 2));
    cr_assert(eq(str, text, (char *)CONNREP_SMTP_TEXT));

    connrep_close(&z);
    connrep_close(&m);
}

Test(lookup, clean_connector_stays_allowed)
{
    connrep_client *z = open_ipc();
    connrep_client *m = open_shm();
    json_t *st = crp_harness_stats(&H, 2000);
    cr_assert(ne(ptr, st, NULL));
    long long applied = crp_harness_stat(st, "events_applied");
    json_decref(st);

    feed_clean("clean-1", 50);
    cr_assert(
        ge(llong, crp_harness_wait_stat(&H, "events_applied", applied + 50, 10000), applied + 50));
    connrep_result r;
    cr_assert(eq(int, connrep_lookup(z, "clean-1", 7, &r), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_ACTIVE));
    cr_assert(eq(ptr, (void *)r.smtp_text, NULL));
    cr_assert(eq(u64, r.since_ms, 0));
    cr_assert(eq(int, connrep_lookup(m, "clean-1", 7, &r), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_ACTIVE));
    cr_assert(eq(ptr, (void *)r.smtp_text, NULL));
    connrep_close(&z);
    connrep_close(&m);
}

/* 1000 connectors, every 10th restricted, looked up in one batch over both
 * paths; then the lookups show in the daemon's stats. */
Test(lookup, batch_of_1000)
{
    enum { N = 1000 };
    static char names[N][24];
    static connrep_id ids[N];
    static connrep_result a[N], b[N];
    json_t *st = crp_harness_stats(&H, 2000);
    cr_assert(ne(ptr, st, NULL));
    long long applied = crp_harness_stat(st, "events_applied");
    long long lookups = crp_harness_stat(st, "lookups");
    json_decref(st);

    uint64_t t0 = crp_harness_now_ms();
    size_t events = 0;
    for (unsigned i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "batch-%04u", i);
        ids[i] = (connrep_id){.id = names[i], .len = strlen(names[i])};
        if (i % 10 == 0) {
            feed_malware(names[i]);
            events += 3;
        } else {
            feed_clean(names[i], 1);
            events += 1;
        }
    }
    cr_assert(ge(llong,
                 crp_harness_wait_stat(&H, "events_applied", applied + (long long)events, 20000),
                 applied + (long long)events));
    uint64_t t1 = crp_harness_now_ms();

    connrep_client *z = open_ipc();
    connrep_client *m = open_shm();
    /* The last restriction may be a moment behind events_applied. */
    connrep_result last;
    cr_assert(eq(int, wait_state(z, names[990], CONNREP_STATE_RESTRICTED, &last, 10000), 0));
    cr_assert(eq(int, connrep_lookup_batch(z, ids, N, a), 0));
    cr_assert(eq(int, connrep_lookup_batch(m, ids, N, b), 0));
    for (unsigned i = 0; i < N; i++) {
        if (i % 10 == 0) {
            check_restricted(&a[i], t0, t1);
        } else {
            cr_assert(eq(int, a[i].state, CONNREP_STATE_ACTIVE), "%s", names[i]);
            cr_assert(eq(ptr, (void *)a[i].smtp_text, NULL));
        }
        cr_assert(eq(int, b[i].state, a[i].state), "%s", names[i]);
        cr_assert(eq(uint, b[i].reasons, a[i].reasons));
        cr_assert(eq(u64, b[i].since_ms, a[i].since_ms));
    }

    st = crp_harness_stats(&H, 2000);
    cr_assert(ne(ptr, st, NULL));
    cr_assert(ge(llong, crp_harness_stat(st, "lookups"), lookups + N));
    cr_assert(ge(llong, crp_harness_stat(st, "restrictions"), N / 10));
    json_decref(st);
    connrep_close(&z);
    connrep_close(&m);
}

/* The daemon stops, is killed, restarts: the ipc client reconnects on its
 * own and the shm client re-attaches to the new engine's table. */
Test(lookup, clients_follow_daemon_restarts)
{
    connrep_client *z = connrep_open(H.lookup_ep, 300);
    cr_assert(ne(ptr, z, NULL));
    connrep_client *m = open_shm();
    connrep_result r;
    feed_malware("bad-1");
    cr_assert(eq(int, wait_state(m, "bad-1", CONNREP_STATE_RESTRICTED, &r, 10000), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_RESTRICTED));

    /* Clean stop: the table is retired, there is nothing to re-attach to. */
    cr_assert(eq(int, crp_harness_stop(&H, SIGTERM, 10000), 0));
    cr_assert(eq(int, connrep_lookup(m, "bad-1", 5, &r), CONNREP_EUNAVAIL));
    cr_assert(eq(int, r.state, CONNREP_STATE_UNKNOWN));
    int rc = connrep_lookup(z, "bad-1", 5, &r);
    cr_assert(rc == CONNREP_EUNAVAIL || rc == CONNREP_ETIMEOUT, "rc %d", rc);

    /* A new engine: both clients answer from it. */
    cr_assert(eq(int, crp_harness_start(&H), 0), "connrepd did not restart");
    feed_malware("bad-2");
    cr_assert(eq(int, wait_state(m, "bad-2", CONNREP_STATE_RESTRICTED, &r, 10000), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_RESTRICTED));
    cr_assert(eq(int, wait_state(z, "bad-2", CONNREP_STATE_RESTRICTED, &r, 10000), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_RESTRICTED));

    /* kill -9: the old table is not retired and keeps answering until the
     * next engine replaces it. */
    cr_assert(eq(int, crp_harness_stop(&H, SIGKILL, 10000), 128 + SIGKILL));
    cr_assert(eq(int, connrep_lookup(m, "bad-2", 5, &r), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_RESTRICTED));
    cr_assert(eq(int, crp_harness_start(&H), 0), "connrepd did not restart after kill -9");
    feed_malware("bad-3");
    cr_assert(eq(int, wait_state(m, "bad-3", CONNREP_STATE_RESTRICTED, &r, 10000), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_RESTRICTED));
    cr_assert(eq(int, wait_state(z, "bad-3", CONNREP_STATE_RESTRICTED, &r, 10000), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_RESTRICTED));

    connrep_close(&z);
    connrep_close(&m);
}
