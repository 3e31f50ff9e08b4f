/* Integration: the real connrepd on ipc:// endpoints in a temp dir.
 *
 * Every test gets a fresh daemon from the harness; the fixture's .fini
 * stops it (SIGTERM, then SIGKILL) and removes its files whatever happened
 * in the test.
 */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "crp/wire.h"
#include "harness.h"

static crp_harness H;

static void setup(void)
{
    cr_assert(eq(int, crp_harness_init(&H), 0));
}

static void teardown(void)
{
    crp_harness_fini(&H);
}

TestSuite(daemon, .init = setup, .fini = teardown, .timeout = 60);

/* The next event; on a timeout the daemon's stats and log are printed. */
static int next_event(int timeout_ms, crp_harness_event *ev)
{
    int rc = crp_harness_next_event(&H, timeout_ms, ev);
    if (rc != 0)
        crp_harness_dump(&H);
    return rc;
}

static void start(void)
{
    cr_assert(eq(int, crp_harness_start(&H), 0), "connrepd did not start");
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static const char *str_of(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "(missing)";
}

/* The event's reasons as one comma-separated string. */
static void reasons_of(json_t *body, char *buf, size_t cap)
{
    json_t *r = json_object_get(body, "reasons");
    size_t i, off = 0;
    json_t *v;
    buf[0] = '\0';
    json_array_foreach(r, i, v)
    {
        off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? "," : "", json_string_value(v));
        if (off >= cap)
            break;
    }
}

/* The evidence entry of a rule, or NULL. */
static json_t *evidence_of(json_t *body, const char *rule)
{
    json_t *ev = json_object_get(body, "evidence");
    size_t i;
    json_t *v;
    json_array_foreach(ev, i, v)
    {
        if (strcmp(str_of(v, "rule"), rule) == 0)
            return v;
    }
    return NULL;
}

static bool is_rfc3339_ms(const char *s)
{
    /* 2026-12-04T17:00:00.123Z */
    return strlen(s) == 24 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' &&
           s[16] == ':' && s[19] == '.' && s[23] == 'Z';
}

/* ------------------------------------------------------------------------ */

struct expect {
    const char *id;
    const char *reasons;  /* wire names, as in the event */
    const char *rule;     /* the evidence entry that must be tripped */
    unsigned reason_bits; /* as in a lookup reply */
    bool seen;
};

Test(daemon, each_threshold_restricts_with_evidence_and_consecutive_sequence)
{
    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));
    uint64_t base_seq = H.last_seq, instance = H.instance;
    /* One timestamp for every event: no decay between them, so the counts
     * are exact. */
    uint64_t ts = crp_harness_now_ms() - 1000;

    cr_assert(eq(int, crp_harness_feed_same(&H, "spam-1", CRP_FEED_VERDICT_SPAM, 1, ts, 20), 0));
    crp_feed_event ph[20];
    for (int i = 0; i < 20; i++) {
        ph[i] = (crp_feed_event){.ts_ms = ts,
                                 .verdict = i < 17 ? 0 : CRP_FEED_VERDICT_PHISH,
                                 .recipients = 1,
                                 .id = "phish-1",
                                 .id_len = 7,
                                 .tenant = "t2",
                                 .tenant_len = 2};
    }
    cr_assert(eq(int, crp_harness_feed(&H, 0, 0, ph, 20), 0));
    cr_assert(
        eq(int, crp_harness_feed_same(&H, "hcphish-1", CRP_FEED_VERDICT_HC_PHISH, 1, ts, 3), 0));
    cr_assert(
        eq(int, crp_harness_feed_same(&H, "malware-1", CRP_FEED_VERDICT_MALWARE, 1, ts, 3), 0));
    cr_assert(eq(int, crp_harness_feed_same(&H, "flood-1", 0, 10001, ts, 1), 0));

    struct expect want[] = {
        {"spam-1", "spam_ratio", "spam_ratio", 0x01, false},
        {"phish-1", "phish_ratio", "phish_ratio", 0x02, false},
        {"hcphish-1", "high_confidence_phish", "high_confidence_phish", 0x04, false},
        {"malware-1", "malware", "malware", 0x08, false},
        {"flood-1", "sending_limit", "recipients_per_hour", 0x10, false},
    };
    const size_t n_want = sizeof want / sizeof want[0];
    for (size_t k = 0; k < n_want; k++) {
        crp_harness_event ev;
        cr_assert(eq(int, next_event(5000, &ev), 0), "event %zu of %zu missing", k + 1, n_want);
        cr_assert(eq(str, ev.topic, "state.restricted"));
        cr_assert(eq(u64, ev.instance, instance));
        cr_assert(eq(u64, ev.seq, base_seq + 1 + k), "sequence numbers must be consecutive");
        char id[64];
        snprintf(id, sizeof id, "%s", str_of(ev.body, "connector_id"));
        struct expect *w = NULL;
        for (size_t i = 0; i < n_want; i++) {
            if (strcmp(want[i].id, id) == 0)
                w = &want[i];
        }
        cr_assert(ne(ptr, w, NULL), "unexpected restriction of '%s'", id);
        cr_assert(not(w->seen), "'%s' restricted twice", id);
        w->seen = true;

        char reasons[256];
        reasons_of(ev.body, reasons, sizeof reasons);
        cr_assert(eq(str, reasons, (char *)w->reasons), "reasons of %s", id);
        cr_assert(eq(str, (char *)str_of(ev.body, "state"), "restricted"));
        cr_assert(eq(str, (char *)str_of(ev.body, "actor"), "engine"));
        cr_assert(
            eq(str, (char *)str_of(ev.body, "tenant"), strcmp(id, "phish-1") == 0 ? "t2" : "t1"));
        cr_assert(is_rfc3339_ms(str_of(ev.body, "since")), "since: %s", str_of(ev.body, "since"));
        cr_assert(eq(sz, json_array_size(json_object_get(ev.body, "evidence")), 6));
        json_t *e = evidence_of(ev.body, w->rule);
        cr_assert(ne(ptr, e, NULL), "no evidence for %s", w->rule);
        bool rule_tripped = json_is_true(json_object_get(e, "tripped"));
        cr_assert(rule_tripped, "%s not tripped", w->rule);
        cr_assert(ge(dbl, json_number_value(json_object_get(e, "value")),
                     json_number_value(json_object_get(e, "threshold"))));
        /* Exactly the expected rules tripped (both recipients rules map to
         * sending_limit; only the hourly one trips here). */
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(ev.body, "evidence"), i, v)
        {
            bool tripped = json_is_true(json_object_get(v, "tripped"));
            cr_assert(eq(int, tripped, strcmp(str_of(v, "rule"), w->rule) == 0),
                      "%s: rule %s tripped=%d", id, str_of(v, "rule"), tripped);
        }
        crp_harness_event_fini(&ev);

        /* The lookup path sees the restriction with the SMTP text. */
        crp_reply_result res;
        char text[128];
        cr_assert(eq(int, crp_harness_lookup(&H, id, &res, text, sizeof text), 0));
        cr_assert(eq(u8, res.state, 2), "lookup of %s", id);
        cr_assert(eq(u8, res.reasons, (uint8_t)w->reason_bits));
        cr_assert(gt(u64, res.since_ms, 0));
        cr_assert(eq(str, text, CRP_SMTP_TEXT));
    }

    json_t *s = crp_harness_stats(&H, 2000);
    cr_assert(ne(ptr, s, NULL));
    cr_assert(eq(i64, crp_harness_stat(s, "restrictions"), (long long)(H.sync_events + n_want)));
    cr_assert(
        eq(i64, crp_harness_stat(s, "events_published"), (long long)(H.sync_events + n_want)));
    json_decref(s);
}

Test(daemon, clean_connector_gets_no_event_and_stays_allowed)
{
    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));
    uint64_t base_seq = H.last_seq;
    long long applied0 = crp_harness_wait_stat(&H, "events_applied", 0, 1000);

    /* Clean messages, bulk and many recipients, but under every limit. */
    cr_assert(eq(int, crp_harness_feed_same(&H, "clean-1", 0, 50, 0, 100), 0));
    cr_assert(eq(int, crp_harness_feed_same(&H, "clean-1", CRP_FEED_VERDICT_BULK, 40, 0, 100), 0));
    cr_assert(
        ge(i64, crp_harness_wait_stat(&H, "events_applied", applied0 + 200, 5000), applied0 + 200));

    /* A restriction after them is the very next event. */
    cr_assert(eq(int, crp_harness_feed_same(&H, "marker-1", CRP_FEED_VERDICT_MALWARE, 1, 0, 3), 0));
    crp_harness_event ev;
    cr_assert(eq(int, next_event(5000, &ev), 0));
    cr_assert(eq(str, (char *)str_of(ev.body, "connector_id"), "marker-1"));
    cr_assert(eq(u64, ev.seq, base_seq + 1));
    crp_harness_event_fini(&ev);

    crp_reply_result res;
    char text[128];
    cr_assert(eq(int, crp_harness_lookup(&H, "clean-1", &res, text, sizeof text), 0));
    cr_assert(eq(u8, res.state, 1), "clean connector is active");
    cr_assert(eq(u64, res.since_ms, 0));
    cr_assert(eq(str, text, ""));
    cr_assert(eq(int, crp_harness_lookup(&H, "never-seen", &res, text, sizeof text), 0));
    cr_assert(eq(u8, res.state, 0));
}

/* One frame with the events of many connectors interleaved: the feed
 * splits it by shard (or, with one shard, passes it on whole), and every
 * connector's three malware messages must all be applied. */
static void mixed_frame_restricts_every_connector(const char *shards)
{
    enum { CONNECTORS = 12, EACH = 3 };
    crp_harness_set(&H, "engine", "shards", shards);
    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));
    long long applied0 = crp_harness_wait_stat(&H, "events_applied", 0, 1000);

    char ids[CONNECTORS][16];
    crp_feed_event ev[CONNECTORS * EACH];
    for (int i = 0; i < CONNECTORS * EACH; i++) {
        int c = i % CONNECTORS;
        snprintf(ids[c], sizeof ids[c], "mixed-%02d", c);
        ev[i] = (crp_feed_event){.verdict = CRP_FEED_VERDICT_MALWARE,
                                 .recipients = 1,
                                 .id = ids[c],
                                 .id_len = strlen(ids[c]),
                                 .tenant = "t1",
                                 .tenant_len = 2};
    }
    cr_assert(eq(int, crp_harness_feed(&H, 9, 1, ev, CONNECTORS * EACH), 0));

    bool seen[CONNECTORS] = {false};
    for (int k = 0; k < CONNECTORS; k++) {
        crp_harness_event e;
        cr_assert(eq(int, next_event(5000, &e), 0), "restriction %d missing", k);
        const char *id = str_of(e.body, "connector_id");
        int c = -1;
        cr_assert(eq(int, sscanf(id, "mixed-%d", &c), 1), "unexpected %s", id);
        cr_assert(ge(int, c, 0));
        cr_assert(lt(int, c, CONNECTORS));
        cr_assert(not(seen[c]));
        seen[c] = true;
        crp_harness_event_fini(&e);
    }
    cr_assert(eq(i64,
                 crp_harness_wait_stat(&H, "events_applied", applied0 + CONNECTORS * EACH, 5000),
                 applied0 + CONNECTORS * EACH));
    json_t *s = crp_harness_stats(&H, 2000);
    cr_assert(eq(i64, crp_harness_stat(s, "shards"), atoi(shards)));
    json_decref(s);
    for (int c = 0; c < CONNECTORS; c++) {
        crp_reply_result res;
        char text[128];
        cr_assert(eq(int, crp_harness_lookup(&H, ids[c], &res, text, sizeof text), 0));
        cr_assert(eq(u8, res.state, 2), "%s restricted", ids[c]);
    }
}

Test(daemon, a_frame_split_over_four_shards_is_applied_whole)
{
    mixed_frame_restricts_every_connector("4");
}

Test(daemon, a_frame_for_one_shard_is_applied_whole)
{
    mixed_frame_restricts_every_connector("1");
}

/* ------------------------------------------------------------------------ */

/* A valid one-event frame in buf; returns its length. */
static size_t valid_frame(unsigned char *buf, size_t cap, const char *id)
{
    crp_feed_event ev = {.verdict = 0, .recipients = 1, .id = id, .id_len = strlen(id)};
    crp_feed_builder b;
    cr_assert(crp_feed_builder_init(&b, buf, cap, 0, 0));
    cr_assert(crp_feed_builder_add(&b, &ev));
    return crp_feed_builder_finish(&b);
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

Test(daemon, every_malformed_frame_is_counted_by_reason_and_the_daemon_keeps_serving)
{
    start();
    unsigned char base[128], f[128];
    size_t n = valid_frame(base, sizeof base, "ok-1");
    const size_t ev0 = CRP_FEED_HEADER_SIZE; /* the event's offset */

    memcpy(f, base, n);
    f[0] = 'X';
    cr_assert(eq(int, crp_harness_feed_raw(&H, f, n), 0)); /* bad_magic */
    memcpy(f, base, n);
    put16(f + 4, 2);
    cr_assert(eq(int, crp_harness_feed_raw(&H, f, n), 0));        /* bad_version */
    cr_assert(eq(int, crp_harness_feed_raw(&H, base, n - 1), 0)); /* truncated */
    memcpy(f, base, n);
    f[n] = 0;
    cr_assert(eq(int, crp_harness_feed_raw(&H, f, n + 1), 0)); /* trailing_bytes */
    memcpy(f, base, n);
    memset(f + 24, 0, 4);
    cr_assert(eq(int, crp_harness_feed_raw(&H, f, n), 0)); /* bad_count */
    memcpy(f, base, n);
    put16(f + 6, 1);
    cr_assert(eq(int, crp_harness_feed_raw(&H, f, n), 0)); /* reserved_bits (flags) */
    memcpy(f, base, n);
    put16(f + ev0 + 10, 0);
    cr_assert(eq(int, crp_harness_feed_raw(&H, f, n), 0)); /* bad_recipients */
    /* bad_id_length: an event with id length 0 and no id bytes. */
    memcpy(f, base, ev0 + 14);
    f[ev0 + 12] = 0;
    f[ev0 + 13] = 0;
    cr_assert(eq(int, crp_harness_feed_raw(&H, f, ev0 + 14), 0));
    /* bad_tenant_length: 65 tenant bytes. */
    unsigned char big[CRP_FEED_HEADER_SIZE + CRP_FEED_EVENT_MAX_SIZE + 8];
    memcpy(big, base, ev0 + 14);
    big[ev0 + 12] = 1;
    big[ev0 + 13] = 65;
    memset(big + ev0 + 14, 'a', 66);
    cr_assert(eq(int, crp_harness_feed_raw(&H, big, ev0 + 14 + 66), 0));
    /* oversize: over max_frame_bytes (64 KiB here), under twice that. */
    size_t over_len = 64 * 1024 + 1;
    unsigned char *over = calloc(1, over_len);
    cr_assert(ne(ptr, over, NULL));
    memcpy(over, base, n);
    cr_assert(eq(int, crp_harness_feed_raw(&H, over, over_len), 0));
    free(over);
    /* A multipart message: rejected whole, counted as trailing_bytes (C2). */
    cr_assert(eq(int, zmq_send(H.push, base, n, ZMQ_SNDMORE), (int)n));
    cr_assert(eq(int, zmq_send(H.push, base, n, 0), (int)n));
    /* Then a good frame, which must be applied after all of them. */
    cr_assert(eq(int, crp_harness_feed_raw(&H, base, n), 0));

    cr_assert(ge(i64, crp_harness_wait_stat(&H, "frames_applied", 1, 5000), 1));
    json_t *s = crp_harness_stats(&H, 2000);
    cr_assert(ne(ptr, s, NULL));
    static const char *const once[] = {
        "bad_magic",         "bad_version",    "truncated",     "bad_count", "bad_id_length",
        "bad_tenant_length", "bad_recipients", "reserved_bits", "oversize",
    };
    for (size_t i = 0; i < sizeof once / sizeof once[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "frames_rejected.%s", once[i]);
        cr_assert(eq(i64, crp_harness_stat(s, path), 1), "%s", path);
    }
    cr_assert(eq(i64, crp_harness_stat(s, "frames_rejected.trailing_bytes"), 2));
    cr_assert(eq(sz, json_object_size(json_object_get(s, "frames_rejected")), 10));
    cr_assert(eq(i64, crp_harness_stat(s, "feed_multipart"), 1));
    cr_assert(eq(i64, crp_harness_stat(s, "frames_applied"), 1));
    cr_assert(eq(i64, crp_harness_wait_stat(&H, "events_applied", 1, 5000), 1));
    static const char *const keys[] = {"events_applied", "frames_applied", "seq_gap",  "seq_repeat",
                                       "lookups",        "restrictions",   "unblocks", "connectors",
                                       "capacity",       "evictions",      "uptime_s"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cr_assert(ge(i64, crp_harness_stat(s, keys[i]), 0), "stats key %s", keys[i]);
    cr_assert(eq(i64, crp_harness_stat(s, "capacity"), 1024));
    json_decref(s);

    /* Over twice the limit ZeroMQ drops the message and the connection
     * itself: not counted, and the daemon goes on with a new connection. */
    void *p = zmq_socket(H.zctx, ZMQ_PUSH);
    int zero = 0;
    zmq_setsockopt(p, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert(eq(int, zmq_connect(p, H.feed_ep), 0));
    size_t huge_len = 200 * 1024;
    unsigned char *huge = calloc(1, huge_len);
    cr_assert(ne(ptr, huge, NULL));
    memcpy(huge, base, n);
    cr_assert(eq(int, zmq_send(p, huge, huge_len, 0), (int)huge_len));
    free(huge);
    zmq_close(p);
    void *q = zmq_socket(H.zctx, ZMQ_PUSH);
    zmq_setsockopt(q, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert(eq(int, zmq_connect(q, H.feed_ep), 0));
    cr_assert(eq(int, zmq_send(q, base, n, 0), (int)n));
    cr_assert(eq(i64, crp_harness_wait_stat(&H, "frames_applied", 2, 5000), 2));
    zmq_close(q);
    s = crp_harness_stats(&H, 2000);
    cr_assert(eq(i64, crp_harness_stat(s, "frames_rejected.oversize"), 1));
    json_decref(s);
    cr_assert(crp_harness_running(&H));
}

Test(daemon, sequence_repeats_are_not_applied_and_gaps_are_counted)
{
    start();
    crp_feed_event ev = {.recipients = 1, .tenant = "t1", .tenant_len = 2};
#define FEED_SEQ(producer, seq, name)                                                              \
    do {                                                                                           \
        ev.id = (name);                                                                            \
        ev.id_len = strlen(name);                                                                  \
        cr_assert(eq(int, crp_harness_feed(&H, (producer), (seq), &ev, 1), 0));                    \
    } while (0)

    FEED_SEQ(42, 1, "seq-a");     /* first of producer 42: applied */
    FEED_SEQ(42, 1, "seq-dup-1"); /* repeat */
    FEED_SEQ(42, 3, "seq-b");     /* gap */
    FEED_SEQ(42, 2, "seq-dup-2"); /* repeat (late) */
    FEED_SEQ(42, 4, "seq-c");     /* next: applied */
    FEED_SEQ(43, 100, "seq-d");   /* new producer: applied, no gap */
    FEED_SEQ(0, 5, "seq-e");      /* anonymous: never tracked */
    FEED_SEQ(0, 5, "seq-f");
    FEED_SEQ(44, 0, "seq-g"); /* unsequenced: never tracked */
    FEED_SEQ(44, 0, "seq-h");
#undef FEED_SEQ

    cr_assert(eq(i64, crp_harness_wait_stat(&H, "events_applied", 8, 5000), 8));
    json_t *s = crp_harness_stats(&H, 2000);
    cr_assert(eq(i64, crp_harness_stat(s, "frames_applied"), 8));
    cr_assert(eq(i64, crp_harness_stat(s, "seq_repeat"), 2));
    cr_assert(eq(i64, crp_harness_stat(s, "seq_gap"), 1));
    json_decref(s);

    crp_reply_result res;
    char text[8];
    static const char *const applied[] = {"seq-a", "seq-b", "seq-c", "seq-d",
                                          "seq-e", "seq-f", "seq-g", "seq-h"};
    for (size_t i = 0; i < sizeof applied / sizeof applied[0]; i++) {
        cr_assert(eq(int, crp_harness_lookup(&H, applied[i], &res, text, sizeof text), 0));
        cr_assert(eq(u8, res.state, 1), "%s applied", applied[i]);
    }
    cr_assert(eq(int, crp_harness_lookup(&H, "seq-dup-1", &res, text, sizeof text), 0));
    cr_assert(eq(u8, res.state, 0), "a repeated frame is not applied");
    cr_assert(eq(int, crp_harness_lookup(&H, "seq-dup-2", &res, text, sizeof text), 0));
    cr_assert(eq(u8, res.state, 0), "a late frame is not applied");
}

Test(daemon, sighup_reloads_thresholds_and_a_bad_file_keeps_the_running_config)
{
    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));
    uint64_t base_seq = H.last_seq;

    /* One malware message is under the default threshold (3). */
    cr_assert(eq(int, crp_harness_feed_same(&H, "mal-a", CRP_FEED_VERDICT_MALWARE, 1, 0, 1), 0));
    cr_assert(ge(i64, crp_harness_wait_stat(&H, "events_applied", 3 * H.sync_events + 1, 5000),
                 3 * H.sync_events + 1));

    crp_harness_set(&H, "scoring", "malware", "1");
    cr_assert(eq(int, crp_harness_write_config(&H), 0));
    cr_assert(eq(int, crp_harness_signal(&H, SIGHUP), 0));
    cr_assert(eq(i64, crp_harness_wait_stat(&H, "config_reloads", 1, 5000), 1));

    cr_assert(eq(int, crp_harness_feed_same(&H, "mal-b", CRP_FEED_VERDICT_MALWARE, 1, 0, 1), 0));
    crp_harness_event ev;
    cr_assert(eq(int, next_event(5000, &ev), 0));
    cr_assert(eq(str, (char *)str_of(ev.body, "connector_id"), "mal-b"),
              "mal-a must not have been restricted");
    cr_assert(eq(u64, ev.seq, base_seq + 1));
    json_t *e = evidence_of(ev.body, "malware");
    cr_assert(eq(dbl, json_number_value(json_object_get(e, "threshold")), 1.0));
    crp_harness_event_fini(&ev);

    /* A broken file: logged, the daemon keeps running with malware = 1. */
    cr_assert(eq(int, crp_harness_write_raw_config(&H, "[scoring]\nmalware = lots\n"), 0));
    cr_assert(eq(int, crp_harness_signal(&H, SIGHUP), 0));
    cr_assert(crp_harness_log_contains(&H, "reload failed, keeping the running config", 5000));
    cr_assert(crp_harness_log_contains(&H, "connrepd.conf:2:", 100));
    cr_assert(crp_harness_running(&H));
    cr_assert(eq(int, crp_harness_feed_same(&H, "mal-c", CRP_FEED_VERDICT_MALWARE, 1, 0, 1), 0));
    cr_assert(eq(int, next_event(5000, &ev), 0));
    cr_assert(eq(str, (char *)str_of(ev.body, "connector_id"), "mal-c"));
    crp_harness_event_fini(&ev);
    json_t *s = crp_harness_stats(&H, 2000);
    cr_assert(eq(i64, crp_harness_stat(s, "config_reloads"), 1));
    json_decref(s);
}

Test(daemon, sigterm_exits_0_and_removes_sockets_shm_and_pid_file)
{
    start();
    /* Some work in flight, so there is something to drain. */
    for (int i = 0; i < 20; i++)
        cr_assert(eq(int, crp_harness_feed_same(&H, "busy-1", 0, 1, 0, 500), 0));
    cr_assert(exists(H.feed_path));
    cr_assert(exists(H.lookup_path));
    cr_assert(exists(H.events_path));
    cr_assert(exists(H.pid_path));
    int fd = shm_open(H.shm_name, O_RDONLY, 0);
    cr_assert(ge(int, fd, 0), "shm object %s exists while running", H.shm_name);
    close(fd);

    cr_assert(eq(int, crp_harness_stop(&H, SIGTERM, 10000), 0));
    cr_assert(not(exists(H.feed_path)));
    cr_assert(not(exists(H.lookup_path)));
    cr_assert(not(exists(H.events_path)));
    cr_assert(not(exists(H.pid_path)));
    errno = 0;
    fd = shm_open(H.shm_name, O_RDONLY, 0);
    cr_assert(eq(int, fd, -1), "shm object removed");
    cr_assert(eq(int, errno, ENOENT));
    cr_assert(crp_harness_log_contains(&H, "stopped", 100));
}

Test(daemon, sigint_also_stops_cleanly)
{
    start();
    cr_assert(eq(int, crp_harness_stop(&H, SIGINT, 10000), 0));
    cr_assert(not(exists(H.pid_path)));
}

Test(daemon, detached_daemon_writes_pid_file_and_log_and_stops_on_sigterm)
{
    cr_assert(eq(int, crp_harness_start_detached(&H), 0));
    cr_assert(exists(H.pid_path));
    char log[CRP_HARNESS_PATH_MAX + 32];
    snprintf(log, sizeof log, "%s/connrepd.log", H.state_dir);
    cr_assert(exists(log));
    json_t *s = crp_harness_stats(&H, 2000);
    cr_assert(ne(ptr, s, NULL), "detached daemon answers stats");
    json_decref(s);
    cr_assert(eq(int, crp_harness_stop(&H, SIGTERM, 10000), 0));
    cr_assert(not(exists(H.feed_path)));
}

Test(daemon, check_config_prints_the_config_or_names_file_and_line)
{
    char out[16384], err[4096];
    cr_assert(eq(int, crp_harness_write_config(&H), 0));
    const char *good[] = {"--config", H.config_path, "--check-config", NULL};
    cr_assert(eq(int, crp_harness_run(good, out, sizeof out, err, sizeof err), 0), "stderr: %s",
              err);
    cr_assert(ne(ptr, strstr(out, "[scoring]"), NULL));
    cr_assert(ne(ptr, strstr(out, "max_connectors = 1024"), NULL));

    cr_assert(eq(
        int, crp_harness_write_raw_config(&H, "[engine]\nshards = 2\nmax_connectors = 1000\n"), 0));
    cr_assert(eq(int, crp_harness_run(good, out, sizeof out, err, sizeof err), 2));
    char where[CRP_HARNESS_PATH_MAX + 8];
    snprintf(where, sizeof where, "%s:3:", H.config_path);
    cr_assert(ne(ptr, strstr(err, where), NULL), "stderr names file:line: %s", err);
    cr_assert(ne(ptr, strstr(err, "max_connectors"), NULL));

    /* And the daemon refuses to start on it, with the same exit status. */
    const char *run[] = {"--config", H.config_path, "--foreground", NULL};
    cr_assert(eq(int, crp_harness_run(run, out, sizeof out, err, sizeof err), 2));
    cr_assert(ne(ptr, strstr(err, where), NULL));

    const char *help[] = {"--help", NULL};
    cr_assert(eq(int, crp_harness_run(help, out, sizeof out, err, sizeof err), 0));
    cr_assert(ne(ptr, strstr(out, "--check-config"), NULL));
    const char *bogus[] = {"--bogus", NULL};
    cr_assert(eq(int, crp_harness_run(bogus, out, sizeof out, err, sizeof err), 2));
}
