/* The engine runtime: table, writer threads, control calls, statistics.
 *
 * INVARIANTS
 *  - Shard s of the table is written by writer thread s only. Everything a
 *    writer changes (events, sweeps, blocks, removals) reaches it as a
 *    message on one of its two sockets, so the single-writer rule of
 *    crp_table's *_sw functions holds without any lock.
 *  - Each writer owns its copy of the policy; a reload sends the new one to
 *    every writer, which swaps it between two messages. No thread ever reads
 *    another thread's policy.
 *  - Every transition a writer makes is sent to the events thread before the
 *    writer replies to the control call or takes the next batch, so the
 *    events thread sees each connector's transitions in the order they were
 *    made.
 *  - The statistics counters are relaxed atomics: they order nothing.
 *  - The engine's own copy of the policy (crp_engine_policy) is for readers
 *    outside the writers; it is guarded by policy_mu and replaced only
 *    after every writer took a reload.
 */
/* pthread_setname_np() is a GNU extension. */
#define _GNU_SOURCE
#include "crp/engine.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "crp/clock.h"
#include "crp/snapshot.h"
#include "engine_priv.h"

/* How often a writer sweeps part of its shard for time-driven transitions,
 * and how long a full pass over the shard should take at most: each wake-up
 * visits shard_slots * SWEEP_EVERY_MS / SWEEP_PASS_MS slots (at least
 * SWEEP_MIN_CHUNK), which keeps a wake-up to a few milliseconds even for
 * millions of connectors. */
#define SWEEP_EVERY_MS  200u
#define SWEEP_PASS_MS   5000u
#define SWEEP_MIN_CHUNK 1024u

/* Transitions queued from writers to the events thread. The writers block
 * when it is full (a transition is never dropped); the events thread only
 * formats and publishes, so it drains far faster than writers fill it. */
#define NOTES_HWM 10000

/* Bytes of feed batches one writer's queue may hold, at most: the queue
 * depth in messages is this divided by max_frame_bytes, clamped to
 * [BATCH_HWM_MIN, BATCH_HWM_MAX]. With the 4 MiB default that is 16
 * batches (64 MiB) per writer. */
#define BATCH_QUEUE_BYTES (64u * 1024u * 1024u)
#define BATCH_HWM_MIN     4
#define BATCH_HWM_MAX     1024

typedef struct crp_writer {
    crp_engine *engine;
    crp_table *table;
    unsigned shard;
    void *data;  /* PULL: batches from the feed, then an empty message */
    void *ctl;   /* ROUTER: control requests */
    void *notes; /* PUSH: transitions to the events thread */
    crp_policy policy;
    crp_event *evbuf; /* CRP_FEED_COUNT_MAX events: one batch, decoded */
    uint64_t sweep_first, sweep_end, sweep_cursor, sweep_chunk;
    uint64_t refused_unlogged, refused_logged_ms; /* log at most once a second */
    uint64_t note_seq; /* notes sent so far (crp_note.wseq); this thread's */
    pthread_t thread;
    bool started;
    /* Written by this writer only, read by crp_engine_stats_json; on their
     * own cache line so readers do not slow the writer down. */
    _Alignas(64) _Atomic uint64_t events_applied; /* statistics only */
    _Atomic uint64_t events_refused;              /* statistics only */
    _Atomic uint64_t restrictions;                /* statistics only */
    _Atomic uint64_t unblocks;                    /* statistics only */
    _Atomic uint64_t batches;                     /* statistics only */
    _Atomic uint64_t sweeps;                      /* statistics only */
} crp_writer;

struct crp_engine {
    crp_counters counters; /* first: it is 64-byte aligned */
    void *zctx;
    crp_config boot; /* the config the engine started with; no identities */
    crp_table *table;
    unsigned shards;
    crp_writer **writers;
    char (*data_ep)[CRP_INPROC_MAX];
    char (*ctl_ep)[CRP_INPROC_MAX];
    char notes_ep[CRP_INPROC_MAX];
    crp_feed *feed;
    crp_events *events;
    bool persist;
    bool durable_init;
    crp_durable durable; /* acknowledgements of journaled changes */
    uint64_t start_mono_ns;
    /* The policy the writers run, for crp_engine_policy. */
    pthread_mutex_t policy_mu;
    crp_policy policy;
    /* Alert-policy edits on their way to the events thread
     * (crp_engine_save_alert_policy): one PUSH socket, created by the first
     * caller, numbered notes; the mutex keeps numbering and sending in one
     * order, and makes the socket safe to share between caller threads. */
    pthread_mutex_t pnote_mu;
    void *pnote_push;
    uint64_t pnote_seq;
    /* Set by crp_engine_stop so that later control calls fail fast instead
     * of waiting for a timeout. Relaxed: it is a hint; a call racing with
     * the stop still ends with CRP_TIMEOUT. */
    _Atomic bool stopped;
    bool stop_done;
};

/* ------------------------------------------------------------------------ */
/* Logging and formatting                                                    */
/* ------------------------------------------------------------------------ */

void crp_log_escape(char *dst, size_t cap, const void *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = src;
    size_t o = 0;
    if (cap == 0)
        return;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need + 4 > cap) { /* room for this, "..." and the NUL */
            if (o + 4 <= cap) {
                memcpy(dst + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (plain) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    dst[o] = '\0';
}

/* ------------------------------------------------------------------------ */
/* ZeroMQ helpers                                                            */
/* ------------------------------------------------------------------------ */

crp_err crp_zmq_bind_list(void *sock, const char *list, bool connect, const char *what,
                          char *errbuf, size_t errlen)
{
    char ep[CRP_CONFIG_LIST_MAX];
    const char *p = list;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (n > 0) {
            if (n >= sizeof ep)
                n = sizeof ep - 1;
            memcpy(ep, p, n);
            ep[n] = '\0';
            int rc = connect ? zmq_connect(sock, ep) : zmq_bind(sock, ep);
            if (rc != 0) {
                snprintf(errbuf, errlen, "%s %s '%s': %s", what, connect ? "connect" : "bind", ep,
                         zmq_strerror(errno));
                return CRP_SYS;
            }
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return CRP_OK;
}

static void set_int(void *sock, int opt, int v)
{
    (void)zmq_setsockopt(sock, opt, &v, sizeof v);
}

/* Reads and discards the remaining frames of a message. */
static void drain_more(void *sock)
{
    int more = 0;
    size_t sz = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        int rc = zmq_msg_recv(&m, sock, 0);
        zmq_msg_close(&m);
        if (rc < 0)
            break;
        sz = sizeof more;
    }
}

static bool has_more(void *sock)
{
    int more = 0;
    size_t sz = sizeof more;
    return zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more;
}

bool crp_ctl_recv(void *router, crp_ctl_req *req, unsigned char *rid, size_t *rid_len)
{
    /* A REQ peer's request arrives as [routing id][""][body]. */
    int rc = zmq_recv(router, rid, 255, ZMQ_DONTWAIT);
    if (rc < 0)
        return false;
    if (rc > 255 || !has_more(router)) {
        drain_more(router);
        return false;
    }
    *rid_len = (size_t)rc;
    char empty[1];
    rc = zmq_recv(router, empty, sizeof empty, 0);
    if (rc != 0 || !has_more(router)) {
        drain_more(router);
        return false;
    }
    rc = zmq_recv(router, req, sizeof *req, 0);
    if (rc != (int)sizeof *req || has_more(router)) {
        drain_more(router);
        return false;
    }
    return true;
}

void crp_ctl_reply(void *router, const unsigned char *rid, size_t rid_len, const crp_ctl_rep *rep)
{
    /* The caller's REQ socket may be gone (it timed out): ROUTER then drops
     * the reply, which is what we want. */
    if (zmq_send(router, rid, rid_len, ZMQ_SNDMORE) < 0)
        return;
    if (zmq_send(router, "", 0, ZMQ_SNDMORE) < 0)
        return;
    (void)zmq_send(router, rep, sizeof *rep, 0);
}

crp_err crp_ctl_call(void *zctx, const char *endpoint, const crp_ctl_req *req, crp_ctl_rep *rep)
{
    void *s = zmq_socket(zctx, ZMQ_REQ);
    if (s == NULL)
        return CRP_SYS;
    set_int(s, ZMQ_LINGER, 0);
    set_int(s, ZMQ_SNDTIMEO, CRP_CTL_TIMEOUT_MS);
    set_int(s, ZMQ_RCVTIMEO, CRP_CTL_TIMEOUT_MS);
    crp_err err = CRP_OK;
    if (zmq_connect(s, endpoint) != 0) {
        err = CRP_SYS;
    } else if (zmq_send(s, req, sizeof *req, 0) != (int)sizeof *req) {
        err = errno == EAGAIN ? CRP_TIMEOUT : CRP_SYS;
    } else {
        int rc = zmq_recv(s, rep, sizeof *rep, 0);
        if (rc < 0)
            err = errno == EAGAIN ? CRP_TIMEOUT : CRP_SYS;
        else if (rc != (int)sizeof *rep)
            err = CRP_PROTO;
    }
    zmq_close(s);
    return err;
}

int crp_thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        (void)pthread_setname_np(*t, name);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Writers                                                                   */
/* ------------------------------------------------------------------------ */

static uint64_t mono_ms(void)
{
    return crp_clock_mono_ns() / 1000000u;
}

static void copy_cstr(char *dst, size_t cap, const char *src)
{
    if (src == NULL)
        src = "";
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Sends one transition to the events thread, with the connector's stored
 * id and tenant (the tenant it was first seen with, which is the one
 * admins scope by), and the entry as it is after the change (the
 * journal's record). Returns the note's number (crp_note.wseq). */
static uint64_t writer_note(crp_writer *w, const crp_transition *tr, const void *id, size_t id_len,
                            const char *actor, const char *comment)
{
    crp_note n;
    crp_record rec;
    memset(&n, 0, sizeof n);
    n.tr = *tr;
    n.since_ms = tr->at_ms;
    n.probation_ms = w->policy.probation_ms;
    n.writer = w->shard;
    n.wseq = ++w->note_seq;
    n.state = tr->to;
    n.reasons = tr->reasons;
    crp_key k = crp_table_key(w->table, id, id_len);
    if (crp_table_read(w->table, &k, &rec) == CRP_OK) {
        n.id_len = rec.id_len;
        memcpy(n.id, rec.id, rec.id_len);
        n.tenant_len = rec.tenant_len;
        memcpy(n.tenant, rec.tenant, rec.tenant_len);
        n.state = rec.entry.state;
        n.reasons = rec.entry.reasons;
        n.until_midnight = rec.entry.until_midnight;
        n.entry_since_ms = rec.entry.since_ms;
        /* A manual block of a restricted connector keeps the old since. */
        if (tr->kind == CRP_TR_BLOCKED && tr->from == CRP_STATE_RESTRICTED)
            n.since_ms = rec.entry.since_ms;
    } else {
        n.id_len = (uint8_t)id_len;
        memcpy(n.id, id, id_len);
    }
    copy_cstr(n.actor, sizeof n.actor, actor != NULL ? actor : "engine");
    copy_cstr(n.comment, sizeof n.comment, comment);

    switch (tr->kind) {
    case CRP_TR_RESTRICTED:
        atomic_fetch_add_explicit(&w->restrictions, 1, memory_order_relaxed); /* statistics */
        break;
    case CRP_TR_BLOCKED:
        if (tr->from != CRP_STATE_RESTRICTED)
            atomic_fetch_add_explicit(&w->restrictions, 1, memory_order_relaxed); /* statistics */
        break;
    case CRP_TR_UNBLOCKED:
    case CRP_TR_RELEASED:
        atomic_fetch_add_explicit(&w->unblocks, 1, memory_order_relaxed); /* statistics */
        break;
    default:
        break;
    }
    /* Blocking send: a transition is never dropped (see NOTES_HWM). */
    while (zmq_send(w->notes, &n, sizeof n, 0) < 0) {
        if (errno != EINTR) {
            crp_log(CRP_LOG_ERROR, "writer %u: cannot pass a transition on: %s", w->shard,
                    zmq_strerror(errno));
            break;
        }
    }
    return n.wseq;
}

static void writer_on_transition(void *ctx, const crp_event *ev, const crp_transition *tr,
                                 size_t ntr)
{
    crp_writer *w = ctx;
    for (size_t i = 0; i < ntr; i++)
        writer_note(w, &tr[i], ev->id, ev->id_len, NULL, NULL);
}

/* Applies one batch. Returns false on the empty message that ends the
 * stream (or when nothing could be read). */
static bool writer_batch(crp_writer *w, bool *stop)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, w->data, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        if (errno == ETERM)
            *stop = true;
        return false;
    }
    size_t len = zmq_msg_size(&m);
    if (len == 0) {
        zmq_msg_close(&m);
        *stop = true;
        return false;
    }
    crp_handoff_recv(zmq_msg_data(&m));
    crp_feed_header hdr;
    crp_feed_reason r = crp_feed_decode(zmq_msg_data(&m), len, 0, &hdr);
    /* The feed thread validated the frame or built this one itself. */
    assert(r == CRP_FEED_OK);
    if (r != CRP_FEED_OK) {
        zmq_msg_close(&m);
        return true;
    }
    crp_feed_iter it;
    crp_feed_event fe;
    size_t n = 0;
    crp_feed_iter_init(&it, &hdr);
    while (n < CRP_FEED_COUNT_MAX && crp_feed_next(&it, &fe)) {
        w->evbuf[n++] = (crp_event){
            .id = fe.id,
            .id_len = (uint8_t)fe.id_len,
            .tenant = fe.tenant,
            .tenant_len = (uint8_t)fe.tenant_len,
            .ts_ms = fe.ts_ms,
            .verdict = fe.verdict,
            .recipients = fe.recipients,
        };
    }
    size_t refused = 0;
    (void)crp_score_apply_batch_sw(w->table, &w->policy, w->evbuf, n, crp_clock_ms(),
                                   writer_on_transition, w, &refused);
    zmq_msg_close(&m);
    /* events_applied is "events of applied frames" (docs/protocol.md 2.6):
     * refused ones (no room in the table) count there too, and again in
     * events_refused. */
    atomic_fetch_add_explicit(&w->events_applied, n, memory_order_relaxed); /* statistics */
    atomic_fetch_add_explicit(&w->batches, 1, memory_order_relaxed);        /* statistics */
    if (refused > 0) {
        atomic_fetch_add_explicit(&w->events_refused, refused,
                                  memory_order_relaxed); /* statistics */
        w->refused_unlogged += refused;
        uint64_t now = mono_ms();
        if (now - w->refused_logged_ms >= 1000u) {
            crp_log(CRP_LOG_WARN,
                    "writer %u: %llu event(s) not scored: no room in the table (every entry "
                    "the connector could take is restricted, in probation or carries bad "
                    "signals; insert_full and ids_full in the stats say which)",
                    w->shard, (unsigned long long)w->refused_unlogged);
            w->refused_unlogged = 0;
            w->refused_logged_ms = now;
        }
    }
    return true;
}

/* Visits the next chunk of this writer's shard and applies the time-driven
 * transitions that are due (crp_score_tick_sw). Only entries that are not
 * plain clean ACTIVE ones can change. */
static void writer_sweep(crp_writer *w)
{
    uint64_t now = crp_clock_ms();
    uint64_t stop_at = w->sweep_cursor + w->sweep_chunk;
    crp_record rec;
    crp_transition tr;

    if (stop_at > w->sweep_end)
        stop_at = w->sweep_end;
    while (w->sweep_cursor < stop_at) {
        uint64_t c = w->sweep_cursor;
        if (!crp_table_next(w->table, &c, &rec) || rec.slot >= w->sweep_end) {
            w->sweep_cursor = w->sweep_end;
            break;
        }
        w->sweep_cursor = c;
        if (rec.entry.state == CRP_STATE_ACTIVE && !rec.entry.dirty)
            continue;
        bool changed = false;
        if (crp_score_tick_sw(w->table, &w->policy, &rec.key, now, &tr, &changed) == CRP_OK &&
            changed)
            writer_note(w, &tr, rec.id, rec.id_len, NULL, NULL);
    }
    if (w->sweep_cursor >= w->sweep_end) {
        w->sweep_cursor = w->sweep_first;
        atomic_fetch_add_explicit(&w->sweeps, 1, memory_order_relaxed); /* statistics */
    }
}

static void writer_control(crp_writer *w)
{
    crp_ctl_req req;
    crp_ctl_rep rep;
    unsigned char rid[256];
    size_t rid_len = 0;

    if (!crp_ctl_recv(w->ctl, &req, rid, &rid_len))
        return;
    memset(&rep, 0, sizeof rep);
    uint64_t now = crp_clock_ms();
    crp_err err = CRP_INVAL;
    switch (req.op) {
    case CRP_CTL_BLOCK:
        err = crp_score_block_sw(w->table, &w->policy, req.id, req.id_len, req.tenant,
                                 req.tenant_len, now, &rep.tr);
        if (err == CRP_OK && rep.tr.kind != CRP_TR_NONE)
            rep.note_seq = writer_note(w, &rep.tr, req.id, req.id_len, req.actor, req.comment);
        break;
    case CRP_CTL_REMOVE: {
        crp_key k = crp_table_key(w->table, req.id, req.id_len);
        err = crp_score_remove_sw(w->table, &w->policy, &k, now, &rep.tr);
        if (err == CRP_OK)
            rep.note_seq = writer_note(w, &rep.tr, req.id, req.id_len, req.actor, req.comment);
        break;
    }
    case CRP_CTL_POLICY:
        w->policy = req.policy;
        err = CRP_OK;
        break;
    case CRP_CTL_GET: {
        crp_key k = crp_table_key(w->table, req.id, req.id_len);
        crp_engine_detail *d = &rep.detail;
        err = crp_table_read(w->table, &k, &d->record);
        if (err == CRP_OK) {
            d->at_ms = now;
            crp_score_values_at(&w->policy, &d->record.entry, now, &d->values);
            d->n_rules =
                crp_score_explain(&w->policy, &d->record.entry, now, d->rules, CRP_RULE_COUNT);
        }
        break;
    }
    default:
        break;
    }
    rep.err = err;
    crp_ctl_reply(w->ctl, rid, rid_len, &rep);
}

static void *writer_main(void *arg)
{
    crp_writer *w = arg;
    uint64_t next_sweep = mono_ms() + SWEEP_EVERY_MS;
    bool stop = false;

    while (!stop) {
        zmq_pollitem_t items[2] = {
            {.socket = w->ctl, .events = ZMQ_POLLIN},
            {.socket = w->data, .events = ZMQ_POLLIN},
        };
        uint64_t now = mono_ms();
        long timeout = next_sweep > now ? (long)(next_sweep - now) : 0;
        if (zmq_poll(items, 2, timeout) < 0) {
            if (errno == EINTR)
                continue;
            crp_log(CRP_LOG_ERROR, "writer %u: poll: %s", w->shard, zmq_strerror(errno));
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            writer_control(w);
        if (items[1].revents & ZMQ_POLLIN) {
            /* A bounded burst, so control calls and sweeps are not starved
             * by a busy feed. */
            for (int i = 0; i < 32 && !stop; i++) {
                if (!writer_batch(w, &stop))
                    break;
            }
        }
        now = mono_ms();
        if (now >= next_sweep) {
            writer_sweep(w);
            next_sweep = now + SWEEP_EVERY_MS;
        }
    }
    /* Everything the feed sent has been applied: tell the events thread. */
    while (zmq_send(w->notes, "", 0, 0) < 0 && errno == EINTR)
        ;
    zmq_close(w->data);
    zmq_close(w->ctl);
    zmq_close(w->notes);
    w->data = w->ctl = w->notes = NULL;
    return NULL;
}

static void writer_destroy(crp_writer **wp)
{
    crp_writer *w = *wp;
    if (w == NULL)
        return;
    /* Sockets are still here only when the thread never ran. */
    if (w->data != NULL)
        zmq_close(w->data);
    if (w->ctl != NULL)
        zmq_close(w->ctl);
    if (w->notes != NULL)
        zmq_close(w->notes);
    free(w->evbuf);
    free(w);
    *wp = NULL;
}

static crp_err writer_create(crp_writer **out, crp_engine *e, unsigned shard, int hwm,
                             const crp_policy *policy, char *errbuf, size_t errlen)
{
    /* Aligned so that the counters' cache line is really their own. */
    size_t size = (sizeof(crp_writer) + 63u) & ~(size_t)63u;
    crp_writer *w = aligned_alloc(64, size);
    if (w == NULL)
        return CRP_NOMEM;
    memset(w, 0, size);
    w->engine = e;
    w->table = e->table;
    w->shard = shard;
    w->policy = *policy;
    w->evbuf = malloc(sizeof(crp_event) * CRP_FEED_COUNT_MAX);
    if (w->evbuf == NULL) {
        free(w);
        return CRP_NOMEM;
    }
    crp_table_shard_range(e->table, shard, &w->sweep_first, &w->sweep_end);
    w->sweep_cursor = w->sweep_first;
    w->sweep_chunk = (w->sweep_end - w->sweep_first) * SWEEP_EVERY_MS / SWEEP_PASS_MS;
    if (w->sweep_chunk < SWEEP_MIN_CHUNK)
        w->sweep_chunk = SWEEP_MIN_CHUNK;

    w->data = zmq_socket(e->zctx, ZMQ_PULL);
    w->ctl = zmq_socket(e->zctx, ZMQ_ROUTER);
    w->notes = zmq_socket(e->zctx, ZMQ_PUSH);
    if (w->data == NULL || w->ctl == NULL || w->notes == NULL)
        goto out_sockets;
    set_int(w->data, ZMQ_RCVHWM, hwm);
    set_int(w->data, ZMQ_LINGER, 0);
    set_int(w->ctl, ZMQ_LINGER, 0);
    set_int(w->notes, ZMQ_SNDHWM, NOTES_HWM);
    /* Everything pushed is read before the events thread stops (see the
     * shutdown protocol), so a bounded linger only guards against a bug. */
    set_int(w->notes, ZMQ_LINGER, 1000);
    if (zmq_bind(w->data, e->data_ep[shard]) != 0 || zmq_bind(w->ctl, e->ctl_ep[shard]) != 0 ||
        zmq_connect(w->notes, e->notes_ep) != 0)
        goto out_sockets;
    *out = w;
    return CRP_OK;

out_sockets:
    snprintf(errbuf, errlen, "writer %u: cannot set up its sockets: %s", shard,
             zmq_strerror(errno));
    writer_destroy(&w);
    return CRP_SYS;
}

/* ------------------------------------------------------------------------ */
/* Engine                                                                    */
/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* Persistence: start-up                                                     */
/* ------------------------------------------------------------------------ */

/* What start-up restores besides the table: the newest alert policy, from
 * the snapshot's extra blob or a later POLICY record. */
typedef struct restore_ctx {
    crp_table *table;
    char *policy; /* malloc'd JSON; NULL: none saved */
    size_t policy_len;
} restore_ctx;

static crp_err keep_policy(restore_ctx *rc, const void *bytes, size_t len)
{
    char *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL)
        return CRP_NOMEM;
    memcpy(copy, bytes, len);
    free(rc->policy);
    rc->policy = copy;
    rc->policy_len = len;
    return CRP_OK;
}

/* Re-applies one journal record, before the writers start (the caller is
 * then every shard's only writer). A STATE record holds the connector's
 * state after the transition, so it is stored as is; a release or unblock
 * also reset the counters, as it did when it happened. A POLICY record
 * replaces the policy kept so far. */
static crp_err replay_record(void *ctx, const crp_journal_rec *r)
{
    restore_ctx *rc = ctx;
    crp_table *t = rc->table;
    if (r->type == CRP_JOURNAL_POLICY)
        return keep_policy(rc, r->policy, r->policy_len);
    if (r->type != CRP_JOURNAL_STATE)
        return CRP_OK;
    const crp_journal_state *s = &r->state;
    crp_key k = crp_table_key(t, s->id, s->id_len);
    crp_slot slot;
    bool created;
    crp_entry e;
    crp_err err = crp_table_upsert_sw(t, &k, s->id, s->id_len, s->tenant, s->tenant_len, s->at_ms,
                                      &slot, &created);
    if (err != CRP_OK)
        return err;
    crp_table_load_sw(t, slot, &e);
    if (s->kind == CRP_TR_UNBLOCKED || s->kind == CRP_TR_RELEASED)
        memset(e.payload, 0, sizeof e.payload);
    e.state = s->state;
    e.reasons = s->reasons;
    e.since_ms = s->since_ms;
    e.until_midnight = s->until_midnight;
    e.dirty = s->state != CRP_STATE_ACTIVE;
    crp_table_store_sw(t, slot, &e);
    return CRP_OK;
}

/* Applies the restored alert policy to the alerts module. The saved
 * policy wins over the config file's [alerts] (those are the policy of a
 * new state_dir); one the module refuses (alerts on while the audit log is
 * now off, or a damaged value) is logged and the config's stays. */
static void restore_policy(const restore_ctx *rc, crp_alerts *alerts)
{
    crp_alert_policy p;
    char why[256];
    if (rc->policy == NULL || alerts == NULL)
        return;
    crp_err err = crp_alert_policy_parse(rc->policy, rc->policy_len, &p, why, sizeof why);
    if (err == CRP_OK)
        err = crp_alerts_set_policy(alerts, &p, why, sizeof why);
    if (err != CRP_OK) {
        crp_log(CRP_LOG_WARN, "the saved alert policy is not used (%s); [alerts] of the config is",
                why);
        return;
    }
    crp_log(CRP_LOG_INFO, "alert policy restored: enabled=%s email=%s recipients=%s daily_limit=%u",
            p.enabled ? "on" : "off", p.email ? "on" : "off", p.recipients, p.daily_limit);
}

/* Loads the newest valid snapshot (falling back to the previous one when
 * the newest is damaged or missing) and replays the journal after it into
 * the table; the writers have not started. On success *jp is the open
 * journal. A damaged journal, or a damaged snapshot without a usable
 * fallback, fails with the module's message (file and offset) in errbuf. */
static crp_err restore(crp_engine *e, const crp_engine_sinks *sinks, crp_journal **jp, char *errbuf,
                       size_t errlen)
{
    char why[1024], why_cur[1024] = "";
    const char *dir = e->boot.engine.state_dir;
    uint64_t covered = 0, t0 = crp_clock_mono_ns();
    crp_snapshot_info info;
    restore_ctx rc = {.table = e->table};
    void *extra = NULL;
    size_t extra_len = 0;
    memset(&info, 0, sizeof info);

    crp_err err = crp_snapshot_load(e->table, dir, CRP_SNAPSHOT_CURRENT, &covered, &extra,
                                    &extra_len, &info, why, sizeof why);
    if (err == CRP_BADFILE || err == CRP_NOTFOUND) {
        if (err == CRP_BADFILE) {
            snprintf(why_cur, sizeof why_cur, "%s", why);
            crp_log(CRP_LOG_ERROR, "%s; trying %s/%s", why, dir, CRP_SNAPSHOT_PREV);
        }
        err = crp_snapshot_load(e->table, dir, CRP_SNAPSHOT_PREVIOUS, &covered, &extra, &extra_len,
                                &info, why, sizeof why);
        if (err == CRP_NOTFOUND && why_cur[0] != '\0') {
            snprintf(errbuf, errlen, "%s (and no %s to fall back to)", why_cur, CRP_SNAPSHOT_PREV);
            return CRP_BADFILE;
        }
    }
    if (err == CRP_NOTFOUND) {
        covered = 0;
        err = CRP_OK;
    }
    if (err != CRP_OK) {
        snprintf(errbuf, errlen, "snapshot in %s: %s", dir, why);
        return err;
    }
    if (info.dropped > 0)
        crp_log(CRP_LOG_WARN,
                "snapshot: %llu clean connectors did not fit the table (max_connectors %llu) "
                "and were dropped; every restricted and probation connector was loaded",
                (unsigned long long)info.dropped, (unsigned long long)crp_table_capacity(e->table));
    /* The snapshot's extra blob is the alert policy when it was written. */
    rc.policy = extra;
    rc.policy_len = extra_len;
    crp_journal_opts jo = {
        .from_seq = covered,
        .replay = replay_record,
        .ctx = &rc,
        .io = sinks->io,
    };
    why[0] = '\0';
    err = crp_journal_open(jp, dir, &jo, why, sizeof why);
    if (err != CRP_OK) {
        free(rc.policy);
        snprintf(errbuf, errlen, "journal in %s: %s", dir, why);
        return err;
    }
    restore_policy(&rc, sinks->alerts);
    free(rc.policy);
    if (why[0] != '\0')
        crp_log(CRP_LOG_WARN, "journal in %s: %s", dir, why);
    crp_journal_stats js;
    crp_journal_stats_get(*jp, &js);
    crp_log(CRP_LOG_INFO,
            "restored %llu connectors from snapshot, replayed %llu journal records in %llu ms",
            (unsigned long long)info.records, (unsigned long long)js.replayed,
            (unsigned long long)((crp_clock_mono_ns() - t0) / 1000000u));
    return CRP_OK;
}

static crp_err durable_init(crp_durable *d, unsigned writers)
{
    d->writers = writers;
    d->processed = calloc(writers, sizeof *d->processed);
    d->durable = calloc(writers, sizeof *d->durable);
    if (d->processed == NULL || d->durable == NULL) {
        free(d->processed);
        free(d->durable);
        return CRP_NOMEM;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    return CRP_OK;
}

static void durable_destroy(crp_durable *d)
{
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d->processed);
    free(d->durable);
}

static int batch_hwm(uint64_t max_frame_bytes)
{
    uint64_t n = max_frame_bytes > 0 ? BATCH_QUEUE_BYTES / max_frame_bytes : BATCH_HWM_MAX;
    if (n < BATCH_HWM_MIN)
        n = BATCH_HWM_MIN;
    if (n > BATCH_HWM_MAX)
        n = BATCH_HWM_MAX;
    return (int)n;
}

/* The scoring policy of a config's [scoring], checked: CRP_OK, or CRP_INVAL
 * with "[scoring] <field>: value makes no sense" in why. */
static crp_err scoring_policy(const crp_config *cfg, crp_policy *out, char *why, size_t whylen)
{
    const char *bad = NULL;
    crp_policy_from_config(out, cfg);
    if (crp_policy_check(out, &bad) != CRP_OK) {
        snprintf(why, whylen, "[scoring] %s: value makes no sense", bad != NULL ? bad : "?");
        return CRP_INVAL;
    }
    return CRP_OK;
}

crp_err crp_engine_create(crp_engine **out, void *zctx, const crp_config *cfg, char *errbuf,
                          size_t errlen)
{
    return crp_engine_create_with(out, zctx, cfg, NULL, errbuf, errlen);
}

crp_err crp_engine_create_with(crp_engine **out, void *zctx, const crp_config *cfg,
                               const crp_engine_sinks *sinks, char *errbuf, size_t errlen)
{
    char scratch[8];
    crp_policy policy;
    crp_err err;

    if (errbuf == NULL || errlen == 0) {
        errbuf = scratch;
        errlen = sizeof scratch;
    }
    errbuf[0] = '\0';
    *out = NULL;

    err = scoring_policy(cfg, &policy, errbuf, errlen);
    if (err != CRP_OK)
        return err;

    size_t size = (sizeof(crp_engine) + 63u) & ~(size_t)63u;
    crp_engine *e = aligned_alloc(64, size);
    if (e == NULL)
        return CRP_NOMEM;
    memset(e, 0, size);
    e->zctx = zctx;
    e->boot = *cfg;
    e->boot.identities = NULL; /* the engine needs none; the caller keeps them */
    e->boot.n_identities = 0;
    e->boot.identities_cap = 0;
    e->start_mono_ns = crp_clock_mono_ns();
    pthread_mutex_init(&e->policy_mu, NULL);
    pthread_mutex_init(&e->pnote_mu, NULL);
    e->policy = policy;

    crp_table_opts topts = {
        .capacity = cfg->engine.max_connectors,
        .shards = cfg->engine.shards,
        .shm_name = cfg->engine.shm_name[0] != '\0' ? cfg->engine.shm_name : NULL,
    };
    err = crp_table_create(&e->table, &topts);
    if (err != CRP_OK) {
        snprintf(errbuf, errlen, "cannot create the connector table%s%s: %s%s%s",
                 topts.shm_name != NULL ? " in shared memory " : "",
                 topts.shm_name != NULL ? topts.shm_name : "", crp_strerror(err),
                 err == CRP_SYS ? ": " : "", err == CRP_SYS ? strerror(errno) : "");
        pthread_mutex_destroy(&e->policy_mu);
        pthread_mutex_destroy(&e->pnote_mu);
        free(e);
        return err;
    }
    e->shards = crp_table_shards(e->table);

    e->writers = calloc(e->shards, sizeof *e->writers);
    e->data_ep = calloc(e->shards, sizeof *e->data_ep);
    e->ctl_ep = calloc(e->shards, sizeof *e->ctl_ep);
    if (e->writers == NULL || e->data_ep == NULL || e->ctl_ep == NULL) {
        err = CRP_NOMEM;
        goto out_destroy;
    }
    /* The engine's address makes the inproc names unique per engine, so
     * two engines may share a context (tests do). */
    for (unsigned s = 0; s < e->shards; s++) {
        snprintf(e->data_ep[s], CRP_INPROC_MAX, "inproc://crp-engine-%p-w%u", (void *)e, s);
        snprintf(e->ctl_ep[s], CRP_INPROC_MAX, "inproc://crp-engine-%p-c%u", (void *)e, s);
    }
    snprintf(e->notes_ep, CRP_INPROC_MAX, "inproc://crp-engine-%p-ev", (void *)e);

    crp_events_opts eopts = {
        .zctx = zctx,
        .bind = cfg->events.bind,
        .notes_endpoint = e->notes_ep,
        .writers = e->shards,
        .counters = &e->counters,
    };
    if (sinks != NULL)
        eopts.sinks = *sinks;
    e->persist = sinks != NULL && sinks->persist;
    if (e->persist) {
        /* The table is restored before any writer runs, so the first
         * lookup and the first scored event already see it. */
        err = durable_init(&e->durable, e->shards + 1); /* + the policy's sender */
        if (err != CRP_OK)
            goto out_destroy;
        e->durable_init = true;
        err = restore(e, sinks, &eopts.journal, errbuf, errlen);
        if (err != CRP_OK)
            goto out_destroy;
        eopts.table = e->table;
        eopts.state_dir = e->boot.engine.state_dir;
        eopts.snapshot_every_ms = cfg->engine.snapshot_every_ms;
        eopts.io = sinks->io;
        eopts.durable = &e->durable;
    }
    /* crp_events_create owns the journal from here on, also when it fails. */
    err = crp_events_create(&e->events, &eopts, errbuf, errlen);
    if (err != CRP_OK)
        goto out_destroy;

    int hwm = batch_hwm(cfg->feed.max_frame_bytes);
    for (unsigned s = 0; s < e->shards; s++) {
        err = writer_create(&e->writers[s], e, s, (hwm + 1) / 2, &policy, errbuf, errlen);
        if (err != CRP_OK)
            goto out_destroy;
    }

    crp_feed_opts fopts = {
        .zctx = zctx,
        .bind = cfg->feed.bind,
        .connect = cfg->feed.connect,
        .max_frame_bytes = cfg->feed.max_frame_bytes,
        .table = e->table,
        .shards = e->shards,
        .writer_data = e->data_ep,
        .batch_hwm = (hwm + 1) / 2,
        .counters = &e->counters,
    };
    err = crp_feed_create(&e->feed, &fopts, errbuf, errlen);
    if (err != CRP_OK)
        goto out_destroy;

    /* Start consumers before producers. A thread that fails to start leaves
     * its sockets to crp_engine_stop, which then performs its part of the
     * shutdown from this thread. */
    err = crp_events_start(e->events);
    for (unsigned s = 0; s < e->shards && err == CRP_OK; s++) {
        crp_writer *w = e->writers[s];
        char name[16];
        snprintf(name, sizeof name, "crp-writer-%u", s % 100u);
        if (crp_thread_start(&w->thread, writer_main, w, name) != 0)
            err = CRP_SYS;
        else
            w->started = true;
    }
    if (err == CRP_OK)
        err = crp_feed_start(e->feed);
    if (err != CRP_OK) {
        snprintf(errbuf, errlen, "cannot start the engine threads: %s", strerror(errno));
        goto out_destroy;
    }
    crp_log(CRP_LOG_INFO,
            "engine started: %u shard writer(s), capacity %llu connectors, shm %s, "
            "feed queue %d batches per writer",
            e->shards, (unsigned long long)crp_table_capacity(e->table),
            topts.shm_name != NULL ? topts.shm_name : "(none)", hwm);
    *out = e;
    return CRP_OK;

out_destroy:
    crp_engine_destroy(&e);
    return err;
}

void crp_engine_stop(crp_engine *e)
{
    if (e == NULL || e->stop_done)
        return;
    e->stop_done = true;
    atomic_store_explicit(&e->stopped, true, memory_order_relaxed); /* a hint; see struct */

    /* 1. Intake stops and the feed flushes every writer's pipe. */
    if (e->feed != NULL)
        crp_feed_stop(e->feed);
    /* 2. Writers exit after the last batch; one that never ran (engine
     *    creation failed half-way) is told "done" on its behalf. */
    for (unsigned s = 0; e->writers != NULL && s < e->shards; s++) {
        crp_writer *w = e->writers[s];
        if (w == NULL)
            continue;
        if (w->started) {
            pthread_join(w->thread, NULL);
            w->started = false;
        } else if (w->notes != NULL) {
            (void)zmq_send(w->notes, "", 0, ZMQ_DONTWAIT);
        }
    }
    /* 3. The events thread exits after every writer's "done". */
    if (e->events != NULL)
        crp_events_join(e->events);
}

void crp_engine_destroy(crp_engine **ep)
{
    crp_engine *e = *ep;
    if (e == NULL)
        return;
    /* When creation failed half-way, the events thread was never started
     * unless every writer was created, so it never waits for a writer that
     * does not exist. */
    crp_engine_stop(e);
    crp_feed_destroy(&e->feed);
    for (unsigned s = 0; e->writers != NULL && s < e->shards; s++)
        writer_destroy(&e->writers[s]);
    if (e->pnote_push != NULL)
        zmq_close(e->pnote_push);
    crp_events_destroy(&e->events);
    if (e->durable_init)
        durable_destroy(&e->durable);
    free(e->writers);
    free(e->data_ep);
    free(e->ctl_ep);
    crp_table_destroy(&e->table);
    pthread_mutex_destroy(&e->policy_mu);
    pthread_mutex_destroy(&e->pnote_mu);
    free(e);
    *ep = NULL;
}

const crp_table *crp_engine_table(const crp_engine *e)
{
    return e->table;
}

void crp_engine_count_lookups(crp_engine *e, uint64_t n)
{
    atomic_fetch_add_explicit(&e->counters.lookups, n, memory_order_relaxed); /* statistics only */
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */
/* ------------------------------------------------------------------------ */

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed) /* statistics only */

static int put_u64(json_t *o, const char *key, uint64_t v)
{
    return json_object_set_new(o, key, json_integer((json_int_t)v));
}

char *crp_engine_stats_json(const crp_engine *e)
{
    const crp_counters *c = &e->counters;
    uint64_t applied = 0, refused = 0, restrictions = 0, unblocks = 0, batches = 0, sweeps = 0;
    for (unsigned s = 0; s < e->shards; s++) {
        const crp_writer *w = e->writers[s];
        applied += LOAD(w->events_applied);
        refused += LOAD(w->events_refused);
        restrictions += LOAD(w->restrictions);
        unblocks += LOAD(w->unblocks);
        batches += LOAD(w->batches);
        sweeps += LOAD(w->sweeps);
    }
    crp_table_stats ts;
    crp_table_stats_get(e->table, &ts);

    json_t *o = json_object();
    json_t *rej = json_object();
    if (o == NULL || rej == NULL) {
        json_decref(o);
        json_decref(rej);
        return NULL;
    }
    int bad = 0;
    bad |= put_u64(o, "events_applied", applied);
    bad |= put_u64(o, "frames_applied", LOAD(c->frames_applied));
    for (int r = 1; r < CRP_FEED_REASON_LIMIT; r++)
        bad |= put_u64(rej, crp_feed_reason_name(r), LOAD(c->frames_rejected[r]));
    bad |= json_object_set_new(o, "frames_rejected", rej);
    bad |= put_u64(o, "seq_gap", LOAD(c->seq_gap));
    bad |= put_u64(o, "seq_repeat", LOAD(c->seq_repeat));
    bad |= put_u64(o, "lookups", LOAD(c->lookups));
    bad |= put_u64(o, "restrictions", restrictions);
    bad |= put_u64(o, "unblocks", unblocks);
    bad |= put_u64(o, "connectors", ts.live);
    bad |= put_u64(o, "capacity", ts.capacity);
    bad |= put_u64(o, "evictions", ts.evictions);
    bad |= put_u64(o, "uptime_s", (crp_clock_mono_ns() - e->start_mono_ns) / 1000000000u);
    /* Extras (docs/protocol.md C7 lets us add keys). */
    bad |= put_u64(o, "restricted", ts.restricted);
    bad |= put_u64(o, "events_refused", refused);
    bad |= put_u64(o, "insert_full", ts.insert_full);
    bad |= put_u64(o, "ids_full", ts.ids_full);
    bad |= put_u64(o, "tenants_full", ts.tenants_full);
    bad |= put_u64(o, "feed_backpressure", LOAD(c->feed_backpressure));
    bad |= put_u64(o, "feed_multipart", LOAD(c->feed_multipart));
    bad |= put_u64(o, "producers_tracked", LOAD(c->producers_tracked));
    bad |= put_u64(o, "producers_evicted", LOAD(c->producers_evicted));
    bad |= put_u64(o, "batches", batches);
    bad |= put_u64(o, "sweeps", sweeps);
    bad |= put_u64(o, "events_published", LOAD(c->events_published));
    bad |= put_u64(o, "journal_failed", LOAD(c->journal_failed));
    bad |= put_u64(o, "journal_errors", LOAD(c->journal_errors));
    bad |= put_u64(o, "journal_records", LOAD(c->journal_records));
    bad |= put_u64(o, "journal_commits", LOAD(c->journal_commits));
    bad |= put_u64(o, "snapshots", LOAD(c->snapshots));
    bad |= put_u64(o, "snapshot_errors", LOAD(c->snapshot_errors));
    bad |= put_u64(o, "snapshot_last_ms", LOAD(c->snapshot_last_ms));
    bad |= put_u64(o, "events_held", LOAD(c->events_held));
    bad |= put_u64(o, "events_held_dropped", LOAD(c->events_held_dropped));
    bad |= put_u64(o, "config_reloads", LOAD(c->config_reloads));
    bad |= put_u64(o, "shards", e->shards);
    char inst[17];
    snprintf(inst, sizeof inst, "%016llx", (unsigned long long)LOAD(c->instance_id));
    bad |= json_object_set_new(o, "instance_id", json_string(inst));
    char *text = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* ------------------------------------------------------------------------ */
/* Control                                                                   */
/* ------------------------------------------------------------------------ */

static bool engine_stopped(const crp_engine *e)
{
    return atomic_load_explicit(&e->stopped, memory_order_relaxed); /* a hint; see struct */
}

/* Fills the id fields of a request; false for a bad length. */
static bool req_id(crp_ctl_req *req, const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > CRP_ID_MAX)
        return false;
    req->id_len = (uint8_t)len;
    memcpy(req->id, id, len);
    return true;
}

static unsigned shard_of_id(const crp_engine *e, const char *id, size_t len)
{
    crp_key k = crp_table_key(e->table, id, len);
    return crp_table_shard_of(e->table, &k);
}

/* The request and reply are a few KiB each: on the heap, so admin threads
 * with small stacks can call. */
static crp_err ctl_alloc(crp_ctl_req **req, crp_ctl_rep **rep)
{
    *req = calloc(1, sizeof **req);
    *rep = calloc(1, sizeof **rep);
    if (*req == NULL || *rep == NULL) {
        free(*req);
        free(*rep);
        return CRP_NOMEM;
    }
    return CRP_OK;
}

/* Sends a state-changing control request (op and its own fields already
 * filled) to the id's shard writer and returns once the change is applied
 * and, with persistence, once the journal commit covering it succeeded:
 * only then is it acknowledged. Frees req and rep. */
static crp_err change_call(crp_engine *e, crp_ctl_req *req, crp_ctl_rep *rep, const char *id,
                           size_t len, const char *actor, const char *comment, crp_transition *out)
{
    crp_err err = CRP_INVAL;
    if (!req_id(req, id, len))
        goto out;
    copy_cstr(req->actor, sizeof req->actor, actor != NULL ? actor : "engine");
    copy_cstr(req->comment, sizeof req->comment, comment);
    unsigned shard = shard_of_id(e, id, len);
    err = crp_ctl_call(e->zctx, e->ctl_ep[shard], req, rep);
    if (err == CRP_OK) {
        err = (crp_err)rep->err;
        if (out != NULL)
            *out = rep->tr;
    }
    if (err == CRP_OK && e->persist && rep->note_seq > 0)
        err = crp_durable_wait(&e->durable, shard, rep->note_seq, CRP_CTL_TIMEOUT_MS);
out:
    free(req);
    free(rep);
    return err;
}

crp_err crp_engine_block(crp_engine *e, const char *id, size_t len, const char *tenant,
                         size_t tenant_len, const char *actor, const char *comment,
                         crp_transition *out)
{
    crp_ctl_req *req;
    crp_ctl_rep *rep;
    if (tenant_len > CRP_TENANT_MAX || (tenant == NULL && tenant_len > 0))
        return CRP_INVAL;
    if (engine_stopped(e))
        return CRP_TIMEOUT;
    crp_err err = ctl_alloc(&req, &rep);
    if (err != CRP_OK)
        return err;
    req->op = CRP_CTL_BLOCK;
    req->tenant_len = (uint8_t)tenant_len;
    if (tenant_len > 0)
        memcpy(req->tenant, tenant, tenant_len);
    return change_call(e, req, rep, id, len, actor, comment, out);
}

crp_err crp_engine_remove(crp_engine *e, const char *id, size_t len, const char *actor,
                          const char *comment, crp_transition *out)
{
    crp_ctl_req *req;
    crp_ctl_rep *rep;
    if (engine_stopped(e))
        return CRP_TIMEOUT;
    crp_err err = ctl_alloc(&req, &rep);
    if (err != CRP_OK)
        return err;
    req->op = CRP_CTL_REMOVE;
    return change_call(e, req, rep, id, len, actor, comment, out);
}

crp_err crp_engine_save_alert_policy(crp_engine *e, const crp_alert_policy *p, const char *actor)
{
    if (!e->persist)
        return CRP_OK;
    if (engine_stopped(e))
        return CRP_TIMEOUT;
    crp_note *n = calloc(1, sizeof *n);
    if (n == NULL)
        return CRP_NOMEM;
    n->what = CRP_NOTE_POLICY;
    n->policy = *p;
    n->writer = CRP_NOTE_POLICY_SENDER(e->shards);
    copy_cstr(n->actor, sizeof n->actor, actor != NULL ? actor : "engine");

    crp_err err = CRP_OK;
    pthread_mutex_lock(&e->pnote_mu);
    if (e->pnote_push == NULL) {
        int zero = 0;
        e->pnote_push = zmq_socket(e->zctx, ZMQ_PUSH);
        if (e->pnote_push == NULL ||
            zmq_setsockopt(e->pnote_push, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
            zmq_connect(e->pnote_push, e->notes_ep) != 0) {
            crp_log(CRP_LOG_ERROR, "engine: cannot reach the events thread: %s",
                    zmq_strerror(errno));
            if (e->pnote_push != NULL)
                zmq_close(e->pnote_push);
            e->pnote_push = NULL;
            err = CRP_SYS;
        }
    }
    if (err == CRP_OK) {
        n->wseq = e->pnote_seq + 1;
        if (zmq_send(e->pnote_push, n, sizeof *n, 0) == (int)sizeof *n)
            e->pnote_seq = n->wseq;
        else
            err = CRP_SYS;
    }
    pthread_mutex_unlock(&e->pnote_mu);
    uint64_t seq = n->wseq;
    free(n);
    if (err != CRP_OK)
        return err;
    return crp_durable_wait(&e->durable, CRP_NOTE_POLICY_SENDER(e->shards), seq,
                            CRP_CTL_TIMEOUT_MS);
}

void crp_engine_policy(crp_engine *e, crp_policy *out)
{
    pthread_mutex_lock(&e->policy_mu);
    *out = e->policy;
    pthread_mutex_unlock(&e->policy_mu);
}

crp_err crp_engine_get(crp_engine *e, const char *id, size_t len, crp_engine_detail *out)
{
    crp_ctl_req *req;
    crp_ctl_rep *rep;
    if (engine_stopped(e))
        return CRP_TIMEOUT;
    crp_err err = ctl_alloc(&req, &rep);
    if (err != CRP_OK)
        return err;
    req->op = CRP_CTL_GET;
    if (!req_id(req, id, len)) {
        err = CRP_INVAL;
        goto out;
    }
    err = crp_ctl_call(e->zctx, e->ctl_ep[shard_of_id(e, id, len)], req, rep);
    if (err == CRP_OK) {
        err = (crp_err)rep->err;
        if (err == CRP_OK)
            *out = rep->detail;
    }
out:
    free(req);
    free(rep);
    return err;
}

/* Logs every setting that only a restart can change and that differs.
 * (Identities need a restart too; the engine does not keep them, so the
 * daemon warns about those.) */
static void warn_restart_only(const crp_config *run, const crp_config *cfg)
{
    struct {
        const char *name;
        bool differs;
    } checks[] = {
        {"[engine] max_connectors", run->engine.max_connectors != cfg->engine.max_connectors},
        {"[engine] shards", run->engine.shards != cfg->engine.shards},
        {"[engine] shm_name", strcmp(run->engine.shm_name, cfg->engine.shm_name) != 0},
        {"[engine] state_dir", strcmp(run->engine.state_dir, cfg->engine.state_dir) != 0},
        {"[feed] bind", strcmp(run->feed.bind, cfg->feed.bind) != 0},
        {"[feed] connect", strcmp(run->feed.connect, cfg->feed.connect) != 0},
        {"[feed] max_frame_bytes", run->feed.max_frame_bytes != cfg->feed.max_frame_bytes},
        {"[lookup] bind", strcmp(run->lookup.bind, cfg->lookup.bind) != 0},
        {"[events] bind", strcmp(run->events.bind, cfg->events.bind) != 0},
        {"[admin] bind", strcmp(run->admin.bind, cfg->admin.bind) != 0},
        {"[admin] secret_key_file",
         strcmp(run->admin.secret_key_file, cfg->admin.secret_key_file) != 0},
        {"[audit] enabled", run->audit.enabled != cfg->audit.enabled},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        if (checks[i].differs)
            crp_log(CRP_LOG_WARN, "reload: %s changed; it takes effect only after a restart",
                    checks[i].name);
    }
}

crp_err crp_engine_reload(crp_engine *e, const crp_config *cfg, char *why, size_t whylen)
{
    crp_ctl_req *req;
    crp_ctl_rep *rep;
    crp_policy policy;
    char scratch[8];

    if (why == NULL || whylen == 0) {
        why = scratch;
        whylen = sizeof scratch;
    }
    why[0] = '\0';
    if (scoring_policy(cfg, &policy, why, whylen) != CRP_OK)
        return CRP_INVAL;
    if (engine_stopped(e)) {
        snprintf(why, whylen, "the engine is stopping");
        return CRP_TIMEOUT;
    }
    crp_err err = ctl_alloc(&req, &rep);
    if (err != CRP_OK)
        return err;
    warn_restart_only(&e->boot, cfg);

    req->op = CRP_CTL_POLICY;
    req->policy = policy;
    for (unsigned s = 0; s < e->shards && err == CRP_OK; s++) {
        err = crp_ctl_call(e->zctx, e->ctl_ep[s], req, rep);
        if (err == CRP_OK)
            err = (crp_err)rep->err;
        if (err != CRP_OK)
            snprintf(why, whylen, "writer %u did not take the new thresholds: %s", s,
                     crp_strerror(err));
    }
    if (err == CRP_OK) {
        pthread_mutex_lock(&e->policy_mu);
        e->policy = policy;
        pthread_mutex_unlock(&e->policy_mu);
        atomic_fetch_add_explicit(&e->counters.config_reloads, 1,
                                  memory_order_relaxed); /* statistics only */
        crp_log(CRP_LOG_INFO,
                "reloaded: half_life %llums min_messages %g spam_ratio %g phish_ratio %g "
                "high_confidence_phish %g malware %g recipients_per_hour %llu "
                "recipients_per_day %llu action %s auto_release_after %llums probation %llums "
                "probation_factor %g",
                (unsigned long long)policy.half_life_ms, policy.min_messages, policy.spam_ratio,
                policy.phish_ratio, policy.high_confidence_phish, policy.malware,
                (unsigned long long)policy.recipients_per_hour,
                (unsigned long long)policy.recipients_per_day, crp_action_name(policy.action),
                (unsigned long long)policy.auto_release_after_ms,
                (unsigned long long)policy.probation_ms, policy.probation_factor);
    }
    free(req);
    free(rep);
    return err;
}
