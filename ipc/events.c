/* The events thread: transitions in from the writers, one log line each,
 * and the state changes published on the PUB socket (docs/protocol.md
 * section 4).
 *
 * Every message is three frames: the topic, 16 bytes (instance id u64 LE,
 * random per start; sequence u64 LE, 1 for the first event and +1 for every
 * published event whatever its topic) and a JSON body. This thread is the
 * only one that numbers events, so the sequence needs no atomics and has no
 * holes: a consumer that sees one knows it missed a message (PUB drops for
 * slow subscribers).
 *
 * Published: restricted, blocked, unblocked, released. Logged only:
 * probation_ended (a consumer computes it from the unblocked/released
 * event's probation_until) and would_restrict (action alert_only: nothing
 * changed).
 *
 * Persistence (crp_engine_sinks.persist): this thread owns the journal.
 * For each batch of notes it appends a STATE record per state change and
 * commits them with one fdatasync before anything below happens, then
 * wakes the control calls waiting for their change to be durable
 * (crp_durable). Between batches it writes the periodic snapshot and
 * rotates the journal, and a final snapshot at a clean stop. Alert-policy
 * edits arrive as notes too (CRP_NOTE_POLICY): each is journaled as a
 * POLICY record in the same commit and then applied to the alerts module;
 * every snapshot carries the policy as its extra blob.
 *
 * A failed journal raises the alarm (log line, stats, alarm.journal event).
 * Nothing is published or audited before it is durable: from then on the
 * batches' transitions are held back, in order, (at most HELD_MAX; more
 * are dropped from publication and counted, their changes stay in the
 * table), while lookups answer with the table as always. The thread tries
 * to heal the journal with a snapshot (which carries every change) after
 * HEAL_FIRST_MS, then at doubling intervals up to HEAL_MAX_MS; the
 * snapshot that heals it releases the held transitions: audit lines,
 * events and alerts, in their order, as if they had just happened.
 *
 * The admin face (crp_engine_sinks), in this order for each transition:
 *  1. the audit log gets the transition's line, before anything is
 *     published, so a consumer that saw an event finds its audit line;
 *  2. the state event is published, and the transition logged;
 *  3. a restriction by a rule (or a would-restrict) goes through the alert
 *     policy, whose alert.suspicious-connector event, when the policy is
 *     on, follows the state event with the next sequence number.
 * The audit line is fdatasync'ed and the alert may start a notify command:
 * both cost a little time, and this thread is the place where it costs
 * nobody a lookup or a scored event (the writers only wait for it when
 * NOTES_HWM transitions are queued). Between notes the thread wakes every
 * REAP_EVERY_MS to reap finished notify commands.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "crp/clock.h"
#include "crp/snapshot.h"
#include "engine_priv.h"

/* Published messages a slow subscriber may lag behind before PUB drops. */
#define PUB_HWM 100000
/* How long a stopping engine tries to flush published events. */
#define PUB_LINGER_MS 500
/* Real numbers in bodies: enough digits for a float counter, few enough
 * that 0.1 prints as 0.1. */
#define BODY_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))
/* How often finished notify commands are reaped while nothing happens. */
#define REAP_EVERY_MS 250
/* Transitions held back while the journal is failed (about 2.5 KiB each). */
#define HELD_MAX 16384u
/* Healing a failed journal: first attempt, and the longest interval. */
#define HEAL_FIRST_MS 1000u
#define HEAL_MAX_MS   30000u

struct crp_events {
    void *pull; /* transitions from the writers */
    void *pub;  /* [events] bind */
    unsigned writers;
    unsigned done;
    crp_audit *audit;   /* NULL: no audit lines */
    crp_alerts *alerts; /* NULL: no alerts */
    crp_counters *c;
    uint64_t instance;
    uint64_t seq;
    crp_journal *journal; /* NULL: no persistence */
    const crp_table *table;
    const char *state_dir;
    uint64_t snapshot_every_ms;
    const crp_io_ops *io;
    crp_durable *durable;
    uint64_t *batch_last; /* per writer: its last note number in this batch */
    bool alarmed;         /* the journal failure has been reported */
    bool audit_alarmed;   /* an audit-log failure has been reported */
    crp_note *held;       /* transitions not yet durable, in order */
    size_t held_n, held_cap;
    pthread_t thread;
    bool started;
};

static void set_int(void *sock, int opt, int v)
{
    (void)zmq_setsockopt(sock, opt, &v, sizeof v);
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* ------------------------------------------------------------------------ */
/* JSON bodies                                                               */
/* ------------------------------------------------------------------------ */

/* A JSON string of arbitrary bytes: as is when they are UTF-8, else with
 * every byte that is not part of a well-formed sequence replaced by U+FFFD
 * (*lossy is then set, and the caller adds the bytes in hex). */
static json_t *text_json(const char *text, size_t len, bool *lossy)
{
    const unsigned char *s = (const unsigned char *)text;
    /* Ids, names and comments are at most CRP_ENGINE_COMMENT_MAX bytes;
     * each byte becomes at most 3 (U+FFFD). */
    char buf[3 * CRP_ENGINE_COMMENT_MAX + 1];
    size_t o = 0;
    *lossy = false;
    if (len > CRP_ENGINE_COMMENT_MAX)
        len = CRP_ENGINE_COMMENT_MAX;
    for (size_t i = 0; i < len;) {
        size_t n = crp_utf8_seq(s + i, len - i);
        if (n == 0) {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            *lossy = true;
        } else {
            memcpy(buf + o, s + i, n);
            o += n;
            i += n;
        }
    }
    return json_stringn(buf, o);
}

static json_t *hex_json(const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char buf[2 * CRP_ID_MAX + 1];
    size_t o = 0;
    for (size_t i = 0; i < len && o + 2 < sizeof buf; i++) {
        buf[o++] = hex[(unsigned char)text[i] >> 4];
        buf[o++] = hex[(unsigned char)text[i] & 15];
    }
    return json_stringn(buf, o);
}

static json_t *time_json(uint64_t ms)
{
    char ts[CRP_RFC3339_LEN];
    return json_string(crp_rfc3339(ms, ts));
}

/* The body of docs/protocol.md section 4 for one transition. */
static char *note_body(const crp_note *n, size_t *len)
{
    json_t *o = json_object();
    json_t *reasons = json_array();
    const char *names[8];
    bool lossy_id, lossy_tenant, lossy;
    int bad = o == NULL || reasons == NULL;

    if (bad) {
        json_decref(o);
        json_decref(reasons);
        return NULL;
    }
    bad |= json_object_set_new(o, "connector_id", text_json(n->id, n->id_len, &lossy_id));
    if (lossy_id)
        bad |= json_object_set_new(o, "connector_id_hex", hex_json(n->id, n->id_len));
    bad |= json_object_set_new(o, "tenant", text_json(n->tenant, n->tenant_len, &lossy_tenant));
    if (lossy_tenant)
        bad |= json_object_set_new(o, "tenant_hex", hex_json(n->tenant, n->tenant_len));
    bad |= json_object_set_new(o, "state", json_string(crp_state_name(n->tr.to)));
    bad |= json_object_set_new(o, "previous_state", json_string(crp_state_name(n->tr.from)));
    size_t k = crp_reason_names(n->tr.reasons, names, 8);
    for (size_t i = 0; i < k; i++)
        bad |= json_array_append_new(reasons, json_string(names[i]));
    bad |= json_object_set_new(o, "reasons", reasons);
    bad |= json_object_set_new(o, "since", time_json(n->since_ms));
    bad |= json_object_set_new(o, "actor", text_json(n->actor, strlen(n->actor), &lossy));
    if (n->comment[0] != '\0')
        bad |= json_object_set_new(o, "comment", text_json(n->comment, strlen(n->comment), &lossy));
    if (n->tr.to == CRP_STATE_PROBATION && n->probation_ms > 0)
        bad |= json_object_set_new(o, "probation_until", time_json(n->since_ms + n->probation_ms));
    if (n->tr.n_evidence > 0) {
        json_t *evidence = json_array();
        bad |= evidence == NULL;
        for (size_t i = 0; evidence != NULL && i < n->tr.n_evidence && i < CRP_RULE_COUNT; i++) {
            const crp_rule_eval *r = &n->tr.evidence[i];
            json_t *e = json_pack("{s:s, s:f, s:f, s:b}", "rule", r->name, "value", r->value,
                                  "threshold", r->threshold, "tripped", (int)r->tripped);
            bad |= json_array_append_new(evidence, e);
        }
        bad |= json_object_set_new(o, "evidence", evidence);
    }
    char *text = bad ? NULL : json_dumps(o, BODY_FLAGS);
    json_decref(o);
    if (text != NULL)
        *len = strlen(text);
    return text;
}

/* ------------------------------------------------------------------------ */
/* Handling                                                                  */
/* ------------------------------------------------------------------------ */

static const char *topic_of(int kind)
{
    switch (kind) {
    case CRP_TR_RESTRICTED:
        return "state.restricted";
    case CRP_TR_BLOCKED:
        return "state.blocked";
    case CRP_TR_UNBLOCKED:
        return "state.unblocked";
    case CRP_TR_RELEASED:
        return "state.released";
    default:
        return NULL;
    }
}

static void publish(struct crp_events *ev, const char *topic, const char *body, size_t len)
{
    unsigned char hdr[16];
    put_le64(hdr, ev->instance);
    put_le64(hdr + 8, ++ev->seq);
    /* PUB never blocks: a subscriber past its high-water mark loses the
     * message and sees the hole in the sequence. */
    if (zmq_send(ev->pub, topic, strlen(topic), ZMQ_SNDMORE) < 0 ||
        zmq_send(ev->pub, hdr, sizeof hdr, ZMQ_SNDMORE) < 0 ||
        zmq_send(ev->pub, body, len, 0) < 0) {
        crp_log(CRP_LOG_ERROR, "events: cannot publish %s: %s", topic, zmq_strerror(errno));
        return;
    }
    atomic_fetch_add_explicit(&ev->c->events_published, 1,
                              memory_order_relaxed); /* statistics only */
}

/* Writes the transition's audit line. Its "since" is the connector's since
 * after the change, as in the event (a manual block of a restricted
 * connector keeps the restriction's since). */
static crp_err audit_note(struct crp_events *ev, const crp_note *n)
{
    crp_transition tr = n->tr;
    tr.at_ms = n->since_ms;
    crp_audit_transition t = {
        .connector_id = n->id,
        .id_len = n->id_len,
        .tenant = n->tenant_len > 0 ? n->tenant : NULL,
        .tenant_len = n->tenant_len,
        .tr = &tr,
        .actor = n->actor,
        .comment = n->comment[0] != '\0' ? n->comment : NULL,
        .defer_sync = true, /* events_main commits a batch with one sync */
    };
    crp_err err = crp_audit_transition_line(ev->audit, &t);
    if (err != CRP_OK && err != CRP_IO)
        crp_log(CRP_LOG_ERROR, "events: cannot write the audit line of a %s transition: %s",
                crp_transition_kind_name(n->tr.kind), crp_strerror(err));
    return err;
}

/* "Suspicious connector activity": a restriction by a rule, or what would
 * have been one under action alert_only, goes through the alert policy
 * (daily limit, e-mail, audit line); when the policy is on, its event is
 * published right after the state event, numbered in the same stream. */
static void alert_note(struct crp_events *ev, const crp_note *n, const char *id_shown,
                       const char *tenant_shown)
{
    crp_alert_info info = {
        .connector_id = n->id,
        .id_len = n->id_len,
        .tenant = n->tenant_len > 0 ? n->tenant : NULL,
        .tenant_len = n->tenant_len,
        .reasons = n->tr.reasons,
        .since_ms = n->since_ms,
        .evidence = n->tr.evidence,
        .n_evidence = n->tr.n_evidence,
        .actor = n->actor,
        .would_restrict = n->tr.kind == CRP_TR_WOULD_RESTRICT,
    };
    crp_alert_decision d;
    uint64_t now = crp_clock_ms();
    crp_err err = crp_alerts_on_restriction(ev->alerts, &info, now, &d);
    if (err != CRP_OK) {
        crp_log(CRP_LOG_ERROR, "events: alert for connector='%s' failed: %s", id_shown,
                crp_strerror(err));
        return;
    }
    if (!d.publish)
        return;
    char *body = crp_alerts_event_json(&info, &d, now);
    if (body == NULL) {
        crp_log(CRP_LOG_ERROR, "events: out of memory formatting alert.suspicious-connector");
        return;
    }
    publish(ev, "alert.suspicious-connector", body, strlen(body));
    free(body);
    crp_log(CRP_LOG_INFO,
            "alert connector='%s' tenant='%s' notification=%s (%u of at most %u today) seq=%llu",
            id_shown, tenant_shown,
            d.notify       ? (d.spawned ? "started" : "not started")
            : d.suppressed ? "suppressed"
                           : "none (e-mail off, or nobody to send to)",
            d.notifications_today, d.daily_limit, (unsigned long long)ev->seq);
}

static void handle_note(struct crp_events *ev, const crp_note *n)
{
    char id[4 * CRP_ID_MAX + 8], tenant[4 * CRP_TENANT_MAX + 8], reasons[128];
    const char *names[8];
    size_t k = crp_reason_names(n->tr.reasons, names, 8), off = 0;
    const char *topic = topic_of(n->tr.kind);

    reasons[0] = '\0';
    for (size_t i = 0; i < k && off < sizeof reasons; i++)
        off +=
            (size_t)snprintf(reasons + off, sizeof reasons - off, "%s%s", i ? "," : "", names[i]);
    crp_log_escape(id, sizeof id, n->id, n->id_len);
    crp_log_escape(tenant, sizeof tenant, n->tenant, n->tenant_len);

    if (topic != NULL) {
        size_t len = 0;
        char *body = note_body(n, &len);
        if (body != NULL) {
            publish(ev, topic, body, len);
            free(body);
        } else {
            crp_log(CRP_LOG_ERROR, "events: out of memory formatting %s", topic);
        }
    }
    bool bad = n->tr.kind == CRP_TR_RESTRICTED || n->tr.kind == CRP_TR_BLOCKED ||
               n->tr.kind == CRP_TR_WOULD_RESTRICT;
    char seq[32] = "";
    if (topic != NULL)
        snprintf(seq, sizeof seq, " seq=%llu", (unsigned long long)ev->seq);
    crp_log(bad ? CRP_LOG_WARN : CRP_LOG_INFO,
            "%s connector='%s' tenant='%s' state=%s reasons=%s actor=%s%s",
            crp_transition_kind_name(n->tr.kind), id, tenant, crp_state_name(n->tr.to),
            k > 0 ? reasons : "-", n->actor, seq);
    if (ev->alerts != NULL &&
        (n->tr.kind == CRP_TR_RESTRICTED || n->tr.kind == CRP_TR_WOULD_RESTRICT))
        alert_note(ev, n, id, tenant);
}

/* ------------------------------------------------------------------------ */
/* Journal, snapshots and acknowledgements                                   */
/* ------------------------------------------------------------------------ */

crp_err crp_durable_wait(crp_durable *d, unsigned writer, uint64_t seq, unsigned timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000u;
    until.tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    crp_err err = CRP_TIMEOUT;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        if (d->durable[writer] >= seq) {
            err = CRP_OK;
            break;
        }
        if (d->processed[writer] >= seq && d->failed) {
            err = CRP_IO;
            break;
        }
        if (d->stopped || pthread_cond_timedwait(&d->cv, &d->mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&d->mu);
    return err;
}

/* The transitions that change what a restart must restore. A would-restrict
 * changes nothing, so it is not journaled. */
static bool journaled(int kind)
{
    switch (kind) {
    case CRP_TR_RESTRICTED:
    case CRP_TR_BLOCKED:
    case CRP_TR_UNBLOCKED:
    case CRP_TR_RELEASED:
    case CRP_TR_PROBATION_ENDED:
        return true;
    default:
        return false;
    }
}

/* The alarm of a failed journal, raised once per failure: a log line, the
 * counters (journal_failed stays 1 until a rotation heals the journal) and
 * an alarm.journal event (docs/protocol.md section 4). */
static void journal_alarm(struct crp_events *ev)
{
    atomic_fetch_add_explicit(&ev->c->journal_errors, 1, memory_order_relaxed); /* statistics */
    if (ev->alarmed)
        return;
    ev->alarmed = true;
    atomic_store_explicit(&ev->c->journal_failed, 1, memory_order_relaxed); /* statistics */
    const char *why = crp_journal_error(ev->journal);
    crp_log(CRP_LOG_ERROR,
            "ALARM journal failed: %s; state changes are applied but not acknowledged as "
            "durable until a snapshot succeeds",
            why);
    json_t *o = json_pack("{s:s, s:s, s:i, s:o}", "alarm", "journal", "error", why, "errno",
                          crp_journal_errno(ev->journal), "at", time_json(crp_clock_ms()));
    char *body = o != NULL ? json_dumps(o, BODY_FLAGS) : NULL;
    json_decref(o);
    if (body != NULL)
        publish(ev, "alarm.journal", body, strlen(body));
    free(body);
}

/* The alert policy as JSON: the body of get-alert-policy, plus who set it
 * and when when actor is not NULL (crp_alert_policy_parse reads it back). */
static char *policy_text(const crp_alert_policy *p, const char *actor)
{
    json_t *o = crp_alert_policy_json(p);
    if (o != NULL && actor != NULL &&
        (json_object_set_new(o, "actor", json_string(actor)) != 0 ||
         json_object_set_new(o, "at", time_json(crp_clock_ms())) != 0)) {
        json_decref(o);
        o = NULL;
    }
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

static crp_err journal_policy(struct crp_events *ev, const crp_note *n)
{
    char *text = policy_text(&n->policy, n->actor);
    if (text == NULL)
        return CRP_NOMEM;
    crp_journal_rec rec = {
        .type = CRP_JOURNAL_POLICY,
        .policy = text,
        .policy_len = (uint32_t)strlen(text),
    };
    crp_err err = crp_journal_append(ev->journal, &rec, NULL);
    free(text);
    return err;
}

/* Appends a STATE record per state-changing note of the batch, and a
 * POLICY record per policy edit, and commits them with one fdatasync.
 * Returns true when they are durable. */
static bool journal_batch(struct crp_events *ev, const crp_note *notes, size_t got)
{
    crp_err err = CRP_OK;
    size_t appended = 0;
    for (size_t i = 0; i < got && err == CRP_OK; i++) {
        const crp_note *n = &notes[i];
        if (n->what == CRP_NOTE_POLICY) {
            err = journal_policy(ev, n);
            appended += err == CRP_OK;
            continue;
        }
        if (!journaled(n->tr.kind))
            continue;
        size_t comment_len = strlen(n->comment), actor_len = strlen(n->actor);
        crp_journal_rec rec = {
            .type = CRP_JOURNAL_STATE,
            .state =
                {
                    .id = n->id,
                    .id_len = n->id_len,
                    .tenant = n->tenant,
                    .tenant_len = n->tenant_len,
                    .state = n->state,
                    .reasons = n->reasons,
                    .kind = n->tr.kind,
                    .until_midnight = n->until_midnight,
                    .since_ms = n->entry_since_ms,
                    .at_ms = n->tr.at_ms,
                    .actor = n->actor,
                    .actor_len =
                        (uint8_t)(actor_len < CRP_JOURNAL_ACTOR_MAX ? actor_len
                                                                    : CRP_JOURNAL_ACTOR_MAX),
                    .comment = n->comment,
                    .comment_len =
                        (uint16_t)(comment_len < CRP_JOURNAL_COMMENT_MAX ? comment_len
                                                                         : CRP_JOURNAL_COMMENT_MAX),
                },
        };
        err = crp_journal_append(ev->journal, &rec, NULL);
        if (err == CRP_OK)
            appended++;
    }
    if (err == CRP_OK && appended > 0) {
        err = crp_journal_commit(ev->journal);
        if (err == CRP_OK) {
            atomic_fetch_add_explicit(&ev->c->journal_records, appended,
                                      memory_order_relaxed); /* statistics */
            atomic_fetch_add_explicit(&ev->c->journal_commits, 1,
                                      memory_order_relaxed); /* statistics */
        }
    }
    if (err != CRP_OK) {
        if (!crp_journal_failed(ev->journal))
            crp_log(CRP_LOG_ERROR, "events: cannot journal a transition: %s", crp_strerror(err));
        journal_alarm(ev);
        return false;
    }
    return true;
}

/* Tells the control callers waiting on the batch's notes how it went. */
static void durable_update(struct crp_events *ev, const crp_note *notes, size_t got, bool ok)
{
    crp_durable *d = ev->durable;
    for (unsigned w = 0; w < d->writers; w++)
        ev->batch_last[w] = 0;
    for (size_t i = 0; i < got; i++) {
        if (notes[i].writer < d->writers)
            ev->batch_last[notes[i].writer] = notes[i].wseq;
    }
    pthread_mutex_lock(&d->mu);
    for (unsigned w = 0; w < d->writers; w++) {
        if (ev->batch_last[w] == 0)
            continue;
        d->processed[w] = ev->batch_last[w];
        if (ok)
            d->durable[w] = ev->batch_last[w];
    }
    /* A batch with nothing to journal succeeds even on a failed journal;
     * the journal's own state is what waiters must see. */
    d->failed = crp_journal_failed(ev->journal);
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Writes a snapshot covering every record appended so far (the writers
 * applied each change to the table before sending its note), then trims
 * the journal. A rotation that succeeds also heals a failed journal: it
 * carries every record appended before it, so every note processed so far
 * is durable from then on. */
static void take_snapshot(struct crp_events *ev)
{
    char why[512];
    crp_snapshot_info info;
    uint64_t t0 = crp_clock_mono_ns();
    uint64_t covered = crp_journal_last_seq(ev->journal);
    /* The policy applied so far, which includes every POLICY record up to
     * covered: this thread is the only one that journals and applies them. */
    char *policy = NULL;
    if (ev->alerts != NULL) {
        crp_alert_policy p;
        crp_alerts_get_policy(ev->alerts, &p);
        policy = policy_text(&p, NULL);
    }
    crp_err err =
        crp_snapshot_write(ev->table, ev->state_dir, covered, policy,
                           policy != NULL ? strlen(policy) : 0, ev->io, &info, why, sizeof why);
    free(policy);
    if (err != CRP_OK) {
        atomic_fetch_add_explicit(&ev->c->snapshot_errors, 1,
                                  memory_order_relaxed); /* statistics */
        crp_log(CRP_LOG_ERROR, "snapshot failed: %s", why);
        return;
    }
    err = crp_journal_rotate(ev->journal, covered);
    uint64_t ms = (crp_clock_mono_ns() - t0) / 1000000u;
    atomic_fetch_add_explicit(&ev->c->snapshots, 1, memory_order_relaxed);     /* statistics */
    atomic_store_explicit(&ev->c->snapshot_last_ms, ms, memory_order_relaxed); /* statistics */
    if (err != CRP_OK) {
        journal_alarm(ev);
        return;
    }
    crp_log(CRP_LOG_DEBUG, "snapshot of %llu connectors (sequence %llu) in %llu ms",
            (unsigned long long)info.records, (unsigned long long)covered, (unsigned long long)ms);
    crp_durable *d = ev->durable;
    pthread_mutex_lock(&d->mu);
    if (d->failed)
        crp_log(CRP_LOG_INFO, "journal healed by the snapshot; state changes are durable again");
    for (unsigned w = 0; w < d->writers; w++)
        d->durable[w] = d->processed[w];
    d->failed = false;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (ev->alarmed) {
        ev->alarmed = false;
        atomic_store_explicit(&ev->c->journal_failed, 0, memory_order_relaxed); /* statistics */
    }
}

/* Notes taken per wake-up: their audit lines share one fdatasync (group
 * commit), which keeps a burst of restrictions from queueing behind one
 * disk flush each. */
#define NOTES_PER_BATCH 256

/* Applies the batch's alert-policy edits, in order, once they were
 * journaled (durable or not: like a state change, an edit is applied and
 * only its acknowledgement waits for the disk). */
static void apply_policies(struct crp_events *ev, const crp_note *notes, size_t got)
{
    for (size_t i = 0; i < got; i++) {
        const crp_note *n = &notes[i];
        if (n->what != CRP_NOTE_POLICY)
            continue;
        char why[256];
        crp_err err = ev->alerts != NULL
                          ? crp_alerts_set_policy(ev->alerts, &n->policy, why, sizeof why)
                          : CRP_OK;
        if (err != CRP_OK)
            crp_log(CRP_LOG_ERROR, "events: alert policy of %s not applied: %s", n->actor, why);
        else
            crp_log(CRP_LOG_INFO,
                    "alert policy set by %s: enabled=%s email=%s recipients=%s daily_limit=%u",
                    n->actor, n->policy.enabled ? "on" : "off", n->policy.email ? "on" : "off",
                    n->policy.recipients, n->policy.daily_limit);
    }
}

/* The transitions' audit lines (one sync for all), then their events,
 * log lines and alerts. A transition whose audit line cannot be written
 * (CRP_IO: a full or failing disk) is not published: delivery stops there
 * and returns how many notes went out; the caller holds back the rest and
 * tries again later. When the sync fails none counts as delivered (a retry
 * may then write some lines twice, which beats losing one). */
static size_t deliver(struct crp_events *ev, const crp_note *notes, size_t got)
{
    size_t n = got;
    if (ev->audit != NULL && got > 0) {
        for (size_t i = 0; i < got && n == got; i++) {
            if (notes[i].what == CRP_NOTE_TRANSITION && audit_note(ev, &notes[i]) == CRP_IO)
                n = i;
        }
        if (crp_audit_sync(ev->audit) != CRP_OK)
            n = 0;
        if (n < got && !ev->audit_alarmed) {
            ev->audit_alarmed = true;
            crp_log(CRP_LOG_ERROR,
                    "ALARM the audit log cannot be written; transitions are applied (lookups "
                    "answer with them) but held back from the events socket until their audit "
                    "lines are written");
        } else if (n == got && ev->audit_alarmed) {
            ev->audit_alarmed = false;
            crp_log(CRP_LOG_INFO, "the audit log can be written again");
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (notes[i].what == CRP_NOTE_TRANSITION)
            handle_note(ev, &notes[i]);
    }
    return n;
}

/* Keeps the batch's transitions until the journal heals. */
static void hold(struct crp_events *ev, const crp_note *notes, size_t got)
{
    for (size_t i = 0; i < got; i++) {
        if (notes[i].what != CRP_NOTE_TRANSITION)
            continue;
        if (ev->held_n == ev->held_cap && ev->held_cap < HELD_MAX) {
            size_t cap = ev->held_cap == 0 ? NOTES_PER_BATCH : 2 * ev->held_cap;
            crp_note *p = realloc(ev->held, (cap < HELD_MAX ? cap : HELD_MAX) * sizeof *p);
            if (p != NULL) {
                ev->held = p;
                ev->held_cap = cap < HELD_MAX ? cap : HELD_MAX;
            }
        }
        if (ev->held_n == ev->held_cap) {
            if (atomic_fetch_add_explicit(&ev->c->events_held_dropped, 1, memory_order_relaxed) ==
                0) /* statistics */
                crp_log(CRP_LOG_ERROR,
                        "events: %zu transitions are held back until the disk takes them; "
                        "later ones are applied and answered by lookups but will not be "
                        "published or audited (counted in events_held_dropped)",
                        ev->held_n);
            continue;
        }
        ev->held[ev->held_n++] = notes[i];
    }
    atomic_store_explicit(&ev->c->events_held, ev->held_n, memory_order_relaxed); /* statistics */
}

/* Once the journal is healthy (a snapshot healed it, or it never failed
 * and only the audit log did), every held transition is durable, so it is
 * audited and published, as far as the audit log takes it. */
static void release_held(struct crp_events *ev)
{
    if (ev->held_n == 0 || (ev->journal != NULL && crp_journal_failed(ev->journal)))
        return;
    size_t n = deliver(ev, ev->held, ev->held_n);
    if (n > 0)
        crp_log(CRP_LOG_INFO, "events: published %zu transitions that were held back", n);
    memmove(ev->held, ev->held + n, (ev->held_n - n) * sizeof *ev->held);
    ev->held_n -= n;
    atomic_store_explicit(&ev->c->events_held, ev->held_n, memory_order_relaxed); /* statistics */
}

/* Something waits for the disk: a failed journal, or transitions held
 * back (their journal records or audit lines could not be written). */
static bool stuck(const struct crp_events *ev)
{
    return (ev->journal != NULL && crp_journal_failed(ev->journal)) || ev->held_n > 0;
}

static void *events_main(void *arg)
{
    struct crp_events *ev = arg;
    crp_note *notes = malloc(NOTES_PER_BATCH * sizeof *notes);
    uint64_t next_reap = crp_clock_mono_ns() / 1000000u + REAP_EVERY_MS;
    bool snapshots = ev->journal != NULL && ev->snapshot_every_ms > 0;
    uint64_t next_snapshot = crp_clock_mono_ns() / 1000000u + ev->snapshot_every_ms;
    /* While the journal is failed: when to try healing it, and the next
     * interval (HEAL_FIRST_MS doubling up to HEAL_MAX_MS). 0: not failed. */
    uint64_t next_heal = 0, heal_every = HEAL_FIRST_MS;

    /* The open may have validated the journal but failed to write to it
     * (crp_journal_open): serve, and raise the alarm at once. */
    if (ev->journal != NULL && crp_journal_failed(ev->journal)) {
        journal_alarm(ev);
        pthread_mutex_lock(&ev->durable->mu);
        ev->durable->failed = true;
        pthread_mutex_unlock(&ev->durable->mu);
    }

    while (notes != NULL && ev->done < ev->writers) {
        zmq_pollitem_t items[1] = {
            {.socket = ev->pull, .events = ZMQ_POLLIN},
        };
        /* Without alerts or snapshots there is nothing to do between notes. */
        long timeout = -1;
        if (ev->alerts != NULL)
            timeout = REAP_EVERY_MS;
        uint64_t now_ms = crp_clock_mono_ns() / 1000000u;
        if (snapshots) {
            long until = next_snapshot > now_ms ? (long)(next_snapshot - now_ms) : 0;
            if (timeout < 0 || until < timeout)
                timeout = until;
        }
        if (stuck(ev)) {
            if (next_heal == 0)
                next_heal = now_ms + heal_every;
            long until = next_heal > now_ms ? (long)(next_heal - now_ms) : 0;
            if (timeout < 0 || until < timeout)
                timeout = until;
        }
        if (zmq_poll(items, 1, timeout) < 0) {
            if (errno == EINTR)
                continue;
            crp_log(CRP_LOG_ERROR, "events: poll: %s", zmq_strerror(errno));
            break;
        }
        if (ev->alerts != NULL) {
            uint64_t now = crp_clock_mono_ns() / 1000000u;
            if (now >= next_reap) {
                crp_alerts_reap(ev->alerts);
                next_reap = now + REAP_EVERY_MS;
            }
        }
        size_t got = 0;
        while (got < NOTES_PER_BATCH && (items[0].revents & ZMQ_POLLIN) && ev->done < ev->writers) {
            int rc = zmq_recv(ev->pull, &notes[got], sizeof *notes, ZMQ_DONTWAIT);
            if (rc < 0)
                break;
            if (rc == 0)
                ev->done++; /* a writer has stopped after its last transition */
            else if (rc == (int)sizeof *notes)
                got++;
            else
                crp_log(CRP_LOG_ERROR, "events: dropped a malformed internal message");
        }
        /* The batch's changes are journaled and committed, then its audit
         * lines written and synced, before any of its events is published
         * or alerted on, and before a control call waiting on one of its
         * notes returns. On a failed journal (or while earlier transitions
         * are held back) the batch is held back too, in order. */
        if (got > 0) {
            if (ev->journal != NULL) {
                durable_update(ev, notes, got, journal_batch(ev, notes, got));
                apply_policies(ev, notes, got);
            }
            size_t done = 0;
            if (!stuck(ev))
                done = deliver(ev, notes, got);
            if (done < got)
                hold(ev, notes + done, got - done);
        }
        /* Between batches: the snapshot sees every change journaled so
         * far, and the writers keep scoring while it is written. It is
         * also what heals a failed journal. */
        now_ms = crp_clock_mono_ns() / 1000000u;
        bool heal = next_heal != 0 && now_ms >= next_heal;
        if ((snapshots && now_ms >= next_snapshot) || heal) {
            if ((snapshots && now_ms >= next_snapshot) ||
                (ev->journal != NULL && crp_journal_failed(ev->journal)))
                take_snapshot(ev);
            release_held(ev);
            now_ms = crp_clock_mono_ns() / 1000000u;
            if (snapshots && now_ms >= next_snapshot)
                next_snapshot = now_ms + ev->snapshot_every_ms;
            if (!stuck(ev)) {
                next_heal = 0;
                heal_every = HEAL_FIRST_MS;
            } else if (heal) {
                heal_every = heal_every * 2 < HEAL_MAX_MS ? heal_every * 2 : HEAL_MAX_MS;
                next_heal = now_ms + heal_every;
            }
        }
    }
    /* A clean stop: every writer has flushed, so a final snapshot holds
     * everything and the next start replays nothing. */
    if (notes != NULL && ev->done >= ev->writers) {
        if (ev->journal != NULL)
            take_snapshot(ev);
        release_held(ev);
        if (ev->held_n > 0)
            crp_log(CRP_LOG_ERROR,
                    "events: %zu transitions were never published: the disk did not take their "
                    "journal records or audit lines before the stop",
                    ev->held_n);
    }
    if (ev->durable != NULL) {
        pthread_mutex_lock(&ev->durable->mu);
        ev->durable->stopped = true;
        pthread_cond_broadcast(&ev->durable->cv);
        pthread_mutex_unlock(&ev->durable->mu);
    }
    crp_journal_close(&ev->journal);
    if (notes == NULL)
        crp_log(CRP_LOG_ERROR, "events: out of memory; no events will be published");
    free(notes);
    zmq_close(ev->pull);
    zmq_close(ev->pub);
    ev->pull = ev->pub = NULL;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

static uint64_t random_instance(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
        v = crp_clock_mono_ns() ^ ((uint64_t)getpid() << 32) ^ crp_clock_ms();
    return v != 0 ? v : 1;
}

crp_err crp_events_create(crp_events **out, const crp_events_opts *o, char *errbuf, size_t errlen)
{
    struct crp_events *ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return CRP_NOMEM;
    ev->writers = o->writers;
    ev->audit = o->sinks.audit;
    ev->alerts = o->sinks.alerts;
    ev->c = o->counters;
    ev->journal = o->journal;
    ev->table = o->table;
    ev->state_dir = o->state_dir;
    ev->snapshot_every_ms = o->snapshot_every_ms;
    ev->io = o->io;
    ev->durable = o->durable;
    if (ev->journal != NULL) {
        ev->batch_last = calloc(o->durable->writers, sizeof *ev->batch_last);
        if (ev->batch_last == NULL) {
            crp_journal_close(&ev->journal);
            free(ev);
            return CRP_NOMEM;
        }
    }
    ev->instance = random_instance();
    atomic_store_explicit(&ev->c->instance_id, ev->instance,
                          memory_order_relaxed); /* statistics only */

    ev->pull = zmq_socket(o->zctx, ZMQ_PULL);
    ev->pub = zmq_socket(o->zctx, ZMQ_PUB);
    if (ev->pull == NULL || ev->pub == NULL) {
        snprintf(errbuf, errlen, "events: cannot create sockets: %s", zmq_strerror(errno));
        crp_events_destroy(&ev);
        return CRP_SYS;
    }
    set_int(ev->pull, ZMQ_RCVHWM, 10000);
    set_int(ev->pull, ZMQ_LINGER, 0);
    set_int(ev->pub, ZMQ_SNDHWM, PUB_HWM);
    set_int(ev->pub, ZMQ_LINGER, PUB_LINGER_MS);
    if (zmq_bind(ev->pull, o->notes_endpoint) != 0) {
        snprintf(errbuf, errlen, "events: inproc bind: %s", zmq_strerror(errno));
        crp_events_destroy(&ev);
        return CRP_SYS;
    }
    crp_err err = crp_zmq_bind_list(ev->pub, o->bind, false, "[events]", errbuf, errlen);
    if (err != CRP_OK) {
        crp_events_destroy(&ev);
        return err;
    }
    *out = ev;
    return CRP_OK;
}

crp_err crp_events_start(crp_events *ev)
{
    if (crp_thread_start(&ev->thread, events_main, ev, "crp-events") != 0)
        return CRP_SYS;
    ev->started = true;
    return CRP_OK;
}

void crp_events_join(crp_events *ev)
{
    if (ev == NULL || !ev->started)
        return;
    pthread_join(ev->thread, NULL);
    ev->started = false;
}

void crp_events_destroy(crp_events **evp)
{
    struct crp_events *ev = *evp;
    if (ev == NULL)
        return;
    crp_events_join(ev);
    /* Sockets left here were never handed to the thread. */
    if (ev->pull != NULL)
        zmq_close(ev->pull);
    if (ev->pub != NULL)
        zmq_close(ev->pub);
    /* A journal is still here only when the thread never ran. */
    crp_journal_close(&ev->journal);
    free(ev->batch_last);
    free(ev->held);
    free(ev);
    *evp = NULL;
}
