/* The engine runtime in process: control calls (block, remove, get,
 * reload), the writers' time-driven sweep, and the events they publish.
 * The engine's feed and events sockets are bound on inproc:// endpoints of
 * the test's own ZeroMQ context; the table is anonymous memory.
 */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "crp/config.h"
#include "crp/engine.h"
#include "crp/wire.h"

static void *ctx;
static crp_config cfg;
static crp_engine *engine;
static void *sub, *push;
static char feed_ep[64], events_ep[64];

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void setup(void)
{
    static unsigned n;
    ctx = zmq_ctx_new();
    cr_assert(ne(ptr, ctx, NULL));
    crp_config_defaults(&cfg);
    cfg.engine.max_connectors = 1024;
    cfg.engine.shm_name[0] = '\0';
    snprintf(feed_ep, sizeof feed_ep, "inproc://test-engine-feed-%u", n);
    snprintf(events_ep, sizeof events_ep, "inproc://test-engine-events-%u", n++);
    snprintf(cfg.feed.bind, sizeof cfg.feed.bind, "%s", feed_ep);
    snprintf(cfg.events.bind, sizeof cfg.events.bind, "%s", events_ep);
    cfg.lookup.bind[0] = '\0';
    cfg.admin.bind[0] = '\0';
}

static void teardown(void)
{
    if (sub != NULL)
        zmq_close(sub);
    if (push != NULL)
        zmq_close(push);
    sub = push = NULL;
    crp_engine_destroy(&engine);
    crp_config_fini(&cfg);
    zmq_ctx_term(ctx);
}

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 30);

static void start(void)
{
    char err[256];
    cr_assert(eq(int, crp_engine_create(&engine, ctx, &cfg, err, sizeof err), CRP_OK), "%s", err);
    int zero = 0;
    sub = zmq_socket(ctx, ZMQ_SUB);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    cr_assert(eq(int, zmq_connect(sub, events_ep), 0));
    push = zmq_socket(ctx, ZMQ_PUSH);
    zmq_setsockopt(push, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert(eq(int, zmq_connect(push, feed_ep), 0));
}

/* Next event: its topic and body (the caller json_decref()s it), or NULL
 * after timeout_ms. */
static json_t *next_event(int timeout_ms, char *topic, size_t cap, uint64_t *seq)
{
    zmq_pollitem_t it = {.socket = sub, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return NULL;
    char hdr[16], body[16384];
    int t = zmq_recv(sub, topic, cap - 1, 0);
    int h = zmq_recv(sub, hdr, sizeof hdr, 0);
    int b = zmq_recv(sub, body, sizeof body, 0);
    cr_assert(gt(int, t, 0));
    cr_assert(eq(int, h, 16));
    cr_assert(gt(int, b, 0));
    topic[t] = '\0';
    if (seq != NULL)
        memcpy(seq, hdr + 8, 8); /* little-endian host */
    return json_loadb(body, (size_t)b, 0, NULL);
}

/* Blocks throw-away connectors until the subscription delivers: inproc
 * subscriptions, too, take effect some time after the connect. Returns
 * the number of sync events consumed. */
static unsigned sync_subscription(void)
{
    char topic[64];
    uint64_t seq = 0;
    unsigned n = 0;
    uint64_t deadline = mono_ms() + 5000;
    while (mono_ms() < deadline) {
        char id[32];
        snprintf(id, sizeof id, "sync-%u", n++);
        cr_assert(
            eq(int, crp_engine_block(engine, id, strlen(id), "", 0, "test", NULL, NULL), CRP_OK));
        json_t *b = next_event(50, topic, sizeof topic, &seq);
        if (b == NULL)
            continue;
        json_decref(b);
        while (seq < n) {
            b = next_event(2000, topic, sizeof topic, &seq);
            cr_assert(ne(ptr, b, NULL));
            json_decref(b);
        }
        return n;
    }
    cr_fail("the subscription never became live");
    return 0;
}

static const char *str_of(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "(missing)";
}

static crp_verdict lookup(const char *id)
{
    const crp_table *t = crp_engine_table(engine);
    crp_key k = crp_table_key(t, id, strlen(id));
    crp_verdict v;
    crp_table_lookup(t, &k, &v);
    return v;
}

static void feed_malware(const char *id, int n)
{
    unsigned char buf[1024];
    crp_feed_builder b;
    crp_feed_event ev = {.verdict = CRP_FEED_VERDICT_MALWARE,
                         .recipients = 1,
                         .id = id,
                         .id_len = strlen(id),
                         .tenant = "t1",
                         .tenant_len = 2};
    cr_assert(crp_feed_builder_init(&b, buf, sizeof buf, 0, 0));
    for (int i = 0; i < n; i++)
        cr_assert(crp_feed_builder_add(&b, &ev));
    size_t len = crp_feed_builder_finish(&b);
    cr_assert(eq(int, zmq_send(push, buf, len, 0), (int)len));
}

Test(engine, block_and_remove_are_visible_to_the_next_lookup_and_published)
{
    cfg.scoring.probation_ms = 60000;
    start();
    sync_subscription();
    char topic[64];

    crp_transition tr;
    cr_assert(
        eq(int, crp_engine_block(engine, "b-1", 3, "t9", 2, "alice", "compromised", &tr), CRP_OK));
    cr_assert(eq(int, tr.kind, CRP_TR_BLOCKED));
    /* No waiting: the store happened before the call returned. */
    crp_verdict v = lookup("b-1");
    cr_assert(eq(int, v.state, CRP_STATE_RESTRICTED));
    cr_assert(eq(int, v.reasons, CRP_REASON_MANUAL));

    json_t *b = next_event(2000, topic, sizeof topic, NULL);
    cr_assert(ne(ptr, b, NULL));
    cr_assert(eq(str, topic, "state.blocked"));
    cr_assert(eq(str, (char *)str_of(b, "connector_id"), "b-1"));
    cr_assert(eq(str, (char *)str_of(b, "tenant"), "t9"));
    cr_assert(eq(str, (char *)str_of(b, "state"), "restricted"));
    cr_assert(eq(str, (char *)str_of(b, "actor"), "alice"));
    cr_assert(eq(str, (char *)str_of(b, "comment"), "compromised"));
    cr_assert(eq(str, (char *)json_string_value(json_array_get(json_object_get(b, "reasons"), 0)),
                 "manual"));
    cr_assert(eq(sz, json_array_size(json_object_get(b, "evidence")), 6));
    json_decref(b);

    /* Blocking again changes nothing and publishes nothing. */
    cr_assert(eq(int, crp_engine_block(engine, "b-1", 3, "t9", 2, "alice", NULL, &tr), CRP_OK));
    cr_assert(eq(int, tr.kind, CRP_TR_NONE));

    cr_assert(eq(int, crp_engine_remove(engine, "b-1", 3, "bob", "cleaned up", &tr), CRP_OK));
    cr_assert(eq(int, tr.kind, CRP_TR_UNBLOCKED));
    v = lookup("b-1");
    cr_assert(eq(int, v.state, CRP_STATE_PROBATION), "unblock visible at once");
    b = next_event(2000, topic, sizeof topic, NULL);
    cr_assert(ne(ptr, b, NULL));
    cr_assert(eq(str, topic, "state.unblocked"), "the repeated block published nothing");
    cr_assert(eq(str, (char *)str_of(b, "state"), "probation"));
    cr_assert(eq(str, (char *)str_of(b, "previous_state"), "restricted"));
    cr_assert(eq(str, (char *)str_of(b, "actor"), "bob"));
    cr_assert(eq(str, (char *)str_of(b, "comment"), "cleaned up"));
    cr_assert(ne(ptr, json_object_get(b, "probation_until"), NULL));
    cr_assert(eq(ptr, json_object_get(b, "evidence"), NULL));
    json_decref(b);

    cr_assert(eq(int, crp_engine_remove(engine, "b-1", 3, "bob", NULL, NULL), CRP_CONFLICT));
    cr_assert(eq(int, crp_engine_remove(engine, "nobody", 6, "bob", NULL, NULL), CRP_NOTFOUND));
    cr_assert(eq(int, crp_engine_remove(engine, "", 0, "bob", NULL, NULL), CRP_INVAL));
    char long_tenant[80];
    memset(long_tenant, 'x', sizeof long_tenant);
    cr_assert(
        eq(int, crp_engine_block(engine, "b-2", 3, long_tenant, 65, "a", NULL, NULL), CRP_INVAL));

    crp_engine_detail d;
    cr_assert(eq(int, crp_engine_get(engine, "b-1", 3, &d), CRP_OK));
    cr_assert(eq(int, d.record.entry.state, CRP_STATE_PROBATION));
    cr_assert(eq(str, d.record.id, "b-1"));
    cr_assert(eq(str, d.record.tenant, "t9"));
    cr_assert(eq(sz, d.n_rules, (size_t)CRP_RULE_COUNT));
    cr_assert(eq(int, crp_engine_get(engine, "nobody", 6, &d), CRP_NOTFOUND));

    char *stats = crp_engine_stats_json(engine);
    cr_assert(ne(ptr, stats, NULL));
    json_t *s = json_loads(stats, 0, NULL);
    free(stats);
    cr_assert(ge(i64, json_integer_value(json_object_get(s, "unblocks")), 1));
    cr_assert(ge(i64, json_integer_value(json_object_get(s, "restrictions")), 1));
    json_decref(s);
}

Test(engine, reload_replaces_thresholds_and_refuses_nonsense)
{
    start();
    sync_subscription();
    char topic[64], why[256];

    crp_config next;
    crp_config_defaults(&next);
    memcpy(&next.engine, &cfg.engine, sizeof next.engine);
    next.scoring.malware = 1;
    cr_assert(eq(int, crp_engine_reload(engine, &next, why, sizeof why), CRP_OK), "%s", why);
    feed_malware("m-1", 1);
    json_t *b = next_event(2000, topic, sizeof topic, NULL);
    cr_assert(ne(ptr, b, NULL));
    cr_assert(eq(str, topic, "state.restricted"));
    cr_assert(eq(str, (char *)str_of(b, "connector_id"), "m-1"));
    json_decref(b);

    next.scoring.spam_ratio = 2.0;
    cr_assert(eq(int, crp_engine_reload(engine, &next, why, sizeof why), CRP_INVAL));
    cr_assert(ne(ptr, strstr(why, "spam_ratio"), NULL), "%s", why);
    crp_config_fini(&next);
}

Test(engine, the_sweep_releases_and_ends_probation_without_events)
{
    /* Auto-release after 100 ms, then 100 ms of probation: both happen in
     * a writer's periodic sweep, with no event fed. */
    cfg.scoring.auto_release_after_ms = 100;
    cfg.scoring.probation_ms = 100;
    start();
    sync_subscription();
    char topic[64];

    feed_malware("r-1", 3);
    json_t *b = next_event(2000, topic, sizeof topic, NULL);
    cr_assert(ne(ptr, b, NULL));
    cr_assert(eq(str, topic, "state.restricted"));
    json_decref(b);
    /* Sync connectors were manually blocked: they are never released. */
    b = next_event(3000, topic, sizeof topic, NULL);
    cr_assert(ne(ptr, b, NULL), "no release within 3 s");
    cr_assert(eq(str, topic, "state.released"));
    cr_assert(eq(str, (char *)str_of(b, "connector_id"), "r-1"));
    cr_assert(eq(str, (char *)str_of(b, "actor"), "engine"));
    cr_assert(eq(str, (char *)str_of(b, "state"), "probation"));
    json_decref(b);

    uint64_t deadline = mono_ms() + 3000;
    while (lookup("r-1").state != CRP_STATE_ACTIVE && mono_ms() < deadline)
        poll(NULL, 0, 10);
    cr_assert(eq(int, lookup("r-1").state, CRP_STATE_ACTIVE), "probation ended");
}

Test(engine, control_calls_fail_fast_after_stop)
{
    start();
    crp_engine_stop(engine);
    cr_assert(eq(int, crp_engine_block(engine, "x", 1, "", 0, NULL, NULL, NULL), CRP_TIMEOUT));
    cr_assert(eq(int, crp_engine_remove(engine, "x", 1, NULL, NULL, NULL), CRP_TIMEOUT));
    /* The table stays readable until destroy. */
    cr_assert(eq(int, lookup("x").state, CRP_STATE_UNKNOWN));
}

/* ------------------------------------------------------------------------ */
/* Persistence: a failed disk                                                */
/* ------------------------------------------------------------------------ */

/* While set, every fdatasync (the journal's commits) fails with ENOSPC, as
 * on a full disk. Relaxed: the test thread sets it between control calls,
 * each of which is a round trip through ZeroMQ (a full barrier in
 * practice); the flag publishes no other memory. */
static _Atomic bool fail_fdatasync;
/* The same for fsync, which snapshots and journal rotations use: while it
 * fails, the events thread cannot heal a failed journal. */
static _Atomic bool fail_fsync;

static int failing_fdatasync(int fd)
{
    if (atomic_load_explicit(&fail_fdatasync, memory_order_relaxed)) { /* see above */
        errno = ENOSPC;
        return -1;
    }
    return fdatasync(fd);
}

static int failing_fsync(int fd)
{
    if (atomic_load_explicit(&fail_fsync, memory_order_relaxed)) { /* see fail_fdatasync */
        errno = ENOSPC;
        return -1;
    }
    return fsync(fd);
}

static crp_io_ops failing_io;

static void start_persistent(const char *dir)
{
    char err[1024];
    failing_io = *crp_io_posix();
    failing_io.fdatasync = failing_fdatasync;
    failing_io.fsync = failing_fsync;
    snprintf(cfg.engine.state_dir, sizeof cfg.engine.state_dir, "%s", dir);
    /* Fresh endpoints for each engine: the previous engine's inproc names
     * are released asynchronously by ZeroMQ. */
    static unsigned gen;
    snprintf(feed_ep, sizeof feed_ep, "inproc://test-engine-pfeed-%u", gen);
    snprintf(events_ep, sizeof events_ep, "inproc://test-engine-pevents-%u", gen++);
    snprintf(cfg.feed.bind, sizeof cfg.feed.bind, "%s", feed_ep);
    snprintf(cfg.events.bind, sizeof cfg.events.bind, "%s", events_ep);
    /* No periodic snapshot: the only snapshots are those that heal a
     * failed journal, and the one at the clean stop. */
    cfg.engine.snapshot_every_ms = 0;
    crp_engine_sinks sinks = {.persist = true, .io = &failing_io};
    cr_assert(eq(int, crp_engine_create_with(&engine, ctx, &cfg, &sinks, err, sizeof err), CRP_OK),
              "%s", err);
    int zero = 0;
    sub = zmq_socket(ctx, ZMQ_SUB);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    cr_assert(eq(int, zmq_connect(sub, events_ep), 0));
}

static long long stat_of(const char *key)
{
    char *text = crp_engine_stats_json(engine);
    cr_assert(ne(ptr, text, NULL));
    json_t *o = json_loads(text, 0, NULL);
    free(text);
    long long v = json_integer_value(json_object_get(o, key));
    json_decref(o);
    return v;
}

/* Polls the stats until key reaches at_least (bounded: 15 s); returns the
 * last value seen. The heal is driven by the events thread's clock, and
 * the stats are the only thing that tells a failed attempt. */
static long long wait_stat(const char *key, long long at_least)
{
    long long v = stat_of(key);
    for (int i = 0; i < 1500 && v < at_least; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        v = stat_of(key);
    }
    return v;
}

Test(engine, a_failed_journal_is_an_alarm_and_acknowledges_nothing)
{
    char dir[] = "/tmp/crp-engine-journal-XXXXXX", topic[64];
    uint64_t seq_alarm = 0, seq = 0;
    cr_assert(ne(ptr, mkdtemp(dir), NULL));
    start_persistent(dir);
    sync_subscription();
    cr_assert(eq(int, crp_engine_block(engine, "ok-1", 4, "", 0, "test", NULL, NULL), CRP_OK));
    json_t *b = next_event(2000, topic, sizeof topic, NULL);
    json_decref(b);
    cr_assert(eq(int, (int)stat_of("journal_failed"), 0));

    /* The disk fills: the commit fails, the block is applied (lookups see
     * it) but not acknowledged as durable, and the alarm goes out. */
    atomic_store_explicit(&fail_fsync, true, memory_order_relaxed);     /* see the flag */
    atomic_store_explicit(&fail_fdatasync, true, memory_order_relaxed); /* see the flag */
    cr_assert(eq(int, crp_engine_block(engine, "lost-1", 6, "", 0, "test", NULL, NULL), CRP_IO));
    cr_assert(eq(int, lookup("lost-1").state, CRP_STATE_RESTRICTED));
    cr_assert(eq(int, (int)stat_of("journal_failed"), 1));
    cr_assert(ge(int, (int)stat_of("journal_errors"), 1));
    b = next_event(2000, topic, sizeof topic, &seq_alarm);
    cr_assert(ne(ptr, b, NULL));
    cr_assert(eq(str, topic, "alarm.journal"));
    cr_assert(ne(ptr, strstr(str_of(b, "error"), "fdatasync"), NULL), "%s", str_of(b, "error"));
    json_decref(b);

    /* The journal's disk is back, but a failed journal never retries an
     * fsync on the same data: still not acknowledged. Nothing that is not
     * durable is published: both blocks are held back (the sequence
     * numbers below show that nothing went out after the alarm). */
    atomic_store_explicit(&fail_fdatasync, false, memory_order_relaxed); /* see the flag */
    cr_assert(eq(int, crp_engine_block(engine, "lost-2", 6, "", 0, "test", NULL, NULL), CRP_IO));
    cr_assert(eq(int, lookup("lost-2").state, CRP_STATE_RESTRICTED));
    cr_assert(eq(int, (int)stat_of("events_held"), 2));

    /* The events thread tries to heal the journal with a snapshot; while
     * fsync fails, the attempt fails and nothing is released. */
    cr_assert(ge(i64, wait_stat("snapshot_errors", 1), 1));
    cr_assert(eq(int, (int)stat_of("journal_failed"), 1));
    cr_assert(eq(int, (int)stat_of("events_held"), 2));

    /* Space returns: the next attempt heals the journal (the snapshot holds
     * both blocks), and the held transitions are published in order, right
     * after the alarm. New changes are acknowledged again. */
    atomic_store_explicit(&fail_fsync, false, memory_order_relaxed); /* see the flag */
    b = next_event(15000, topic, sizeof topic, &seq);
    cr_assert(ne(ptr, b, NULL), "the held transitions were not published after the heal");
    cr_assert(eq(str, topic, "state.blocked"));
    cr_assert(eq(str, (char *)str_of(b, "connector_id"), "lost-1"));
    cr_assert(eq(u64, seq, seq_alarm + 1));
    json_decref(b);
    b = next_event(2000, topic, sizeof topic, &seq);
    cr_assert(ne(ptr, b, NULL));
    cr_assert(eq(str, (char *)str_of(b, "connector_id"), "lost-2"));
    cr_assert(eq(u64, seq, seq_alarm + 2));
    json_decref(b);
    cr_assert(eq(int, (int)stat_of("journal_failed"), 0));
    cr_assert(eq(int, (int)stat_of("events_held"), 0));
    cr_assert(eq(int, crp_engine_block(engine, "ok-2", 4, "", 0, "test", NULL, NULL), CRP_OK));

    /* Everything survives a restart. */
    crp_engine_destroy(&engine);
    zmq_close(sub);
    sub = NULL;
    start_persistent(dir);
    cr_assert(eq(int, lookup("ok-1").state, CRP_STATE_RESTRICTED));
    cr_assert(eq(int, lookup("lost-1").state, CRP_STATE_RESTRICTED));
    cr_assert(eq(int, lookup("lost-2").state, CRP_STATE_RESTRICTED));
    cr_assert(eq(int, lookup("ok-2").state, CRP_STATE_RESTRICTED));
    cr_assert(eq(int, (int)stat_of("journal_failed"), 0));
    cr_assert(eq(int, crp_engine_block(engine, "ok-3", 4, "", 0, "test", NULL, NULL), CRP_OK));
    crp_engine_destroy(&engine);

    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert(eq(int, system(cmd), 0));
}
