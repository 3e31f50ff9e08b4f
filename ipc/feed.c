/* The feed thread: verdict frames in (PULL and SUB), per-shard batches out.
 *
 * Each frame is validated whole by crp_feed_decode before anything else
 * happens, so a frame is applied whole or rejected whole (docs/protocol.md
 * section 1 and choice C1); a message of several frames is rejected whole
 * (C2). A valid frame then passes the producer sequence check (C3), is split
 * by shard and sent to the writers, one message per shard involved. The
 * split is skipped when every event belongs to one shard (always, with one
 * shard): the received message itself is passed on, without a copy.
 *
 * Push-back: when a writer's queue is full the feed waits on it (and counts
 * feed_backpressure once per wait). It never drops the rest of a frame, and
 * while it waits it reads nothing, so producers' PUSH sockets see their own
 * queue fill and wait in turn; SUB producers lose frames to ZeroMQ's
 * high-water mark instead, which the sequence check reports as seq_gap.
 *
 * Everything here — sockets, the producer table, scratch buffers — belongs
 * to the feed thread once it has started.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "crp/clock.h"
#include "engine_priv.h"

/* Producers whose last sequence we remember. A producer beyond that pushes
 * out the least recently seen one in its probe window, which is then
 * treated as new (C3). */
#define PRODUCERS_CAP    4096u
#define PRODUCERS_WINDOW 16u

/* Messages read from one socket before looking at the others. */
#define RECV_BURST 64

/* Rejections and sequence anomalies are logged at most once a second per
 * kind, with the number that were not logged. */
#define LOG_EVERY_MS 1000u

enum seq_verdict { SEQ_APPLY, SEQ_GAP, SEQ_REPEAT };

typedef struct producer {
    uint64_t id; /* 0 = free slot */
    uint64_t high;
    uint64_t used; /* feed clock of the last frame, for eviction */
} producer;

typedef struct rate_log {
    uint64_t last_ms;
    uint64_t suppressed;
} rate_log;

struct crp_feed {
    void *zctx;
    void *pull;  /* binds [feed] bind */
    void *sub;   /* connects [feed] connect */
    void **push; /* one per writer */
    int stop_fds[2];
    const crp_table *table;
    unsigned shards;
    uint64_t max_frame_bytes;
    crp_counters *c;
    pthread_t thread;
    bool started;
    bool stopped;

    producer *producers; /* PRODUCERS_CAP */
    uint64_t clock;      /* frames seen, for producer recency */
    uint64_t tracked;

    uint8_t *shard_of; /* CRP_FEED_COUNT_MAX: the shard of each event */
    uint32_t *count;   /* per shard */
    size_t *bytes;     /* per shard: event bytes */
    zmq_msg_t *parts;  /* per shard */

    rate_log reject_log[CRP_FEED_REASON_LIMIT];
    rate_log gap_log, repeat_log;
};

static void set_int(void *sock, int opt, int v)
{
    (void)zmq_setsockopt(sock, opt, &v, sizeof v);
}

static bool rate_ok(rate_log *r)
{
    uint64_t now = crp_clock_mono_ns() / 1000000u;
    if (r->last_ms != 0 && now - r->last_ms < LOG_EVERY_MS) {
        r->suppressed++;
        return false;
    }
    r->last_ms = now;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Producer sequences (choice C3)                                            */
/* ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static enum seq_verdict seq_check(crp_feed *f, uint64_t id, uint64_t seq)
{
    if (id == 0 || seq == 0)
        return SEQ_APPLY;
    f->clock++;
    /* Slots are only ever filled or replaced, never emptied, so the whole
     * window is searched; it is 16 compares. */
    uint64_t home = mix64(id) & (PRODUCERS_CAP - 1u);
    producer *free_slot = NULL, *oldest = NULL;
    for (unsigned i = 0; i < PRODUCERS_WINDOW; i++) {
        producer *p = &f->producers[(home + i) & (PRODUCERS_CAP - 1u)];
        if (p->id == id) {
            p->used = f->clock;
            if (seq <= p->high)
                return SEQ_REPEAT;
            bool gap = seq != p->high + 1;
            p->high = seq;
            return gap ? SEQ_GAP : SEQ_APPLY;
        }
        if (p->id == 0 && free_slot == NULL)
            free_slot = p;
        if (p->id != 0 && (oldest == NULL || p->used < oldest->used))
            oldest = p;
    }
    /* Not tracked: new, or evicted earlier. Either way no H (C3). */
    producer *slot = free_slot;
    if (slot == NULL) {
        slot = oldest;
        atomic_fetch_add_explicit(&f->c->producers_evicted, 1,
                                  memory_order_relaxed); /* statistics only */
    } else {
        f->tracked++;
        atomic_store_explicit(&f->c->producers_tracked, f->tracked,
                              memory_order_relaxed); /* statistics only */
    }
    *slot = (producer){.id = id, .high = seq, .used = f->clock};
    return SEQ_APPLY;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */
/* ------------------------------------------------------------------------ */

/* Sends a batch to writer s, waiting when its queue is full. */
static void push_batch(crp_feed *f, unsigned s, zmq_msg_t *m)
{
    crp_handoff_send(zmq_msg_data(m));
    if (zmq_msg_send(m, f->push[s], ZMQ_DONTWAIT) >= 0)
        return;
    if (errno == EAGAIN) {
        atomic_fetch_add_explicit(&f->c->feed_backpressure, 1,
                                  memory_order_relaxed); /* statistics only */
        for (;;) {
            if (zmq_msg_send(m, f->push[s], 0) >= 0)
                return;
            if (errno != EINTR)
                break;
        }
    }
    crp_log(CRP_LOG_ERROR, "feed: cannot pass a batch to writer %u: %s", s, zmq_strerror(errno));
    zmq_msg_close(m);
    zmq_msg_init(m);
}

/* Splits a valid frame by shard and sends the parts. Returns false, having
 * sent nothing, when memory for the parts ran out. */
static bool dispatch(crp_feed *f, zmq_msg_t *msg, const crp_feed_header *hdr)
{
    if (f->shards == 1) {
        push_batch(f, 0, msg);
        return true;
    }
    crp_feed_iter it;
    crp_feed_event ev;
    uint32_t n = 0;
    unsigned used = 0, last = 0;

    memset(f->count, 0, f->shards * sizeof *f->count);
    memset(f->bytes, 0, f->shards * sizeof *f->bytes);
    crp_feed_iter_init(&it, hdr);
    while (crp_feed_next(&it, &ev)) {
        crp_key k = crp_table_key(f->table, ev.id, ev.id_len);
        unsigned s = crp_table_shard_of(f->table, &k);
        f->shard_of[n++] = (uint8_t)s;
        if (f->count[s]++ == 0) {
            used++;
            last = s;
        }
        f->bytes[s] += CRP_FEED_EVENT_MIN_SIZE + ev.id_len + ev.tenant_len;
    }
    if (used == 1) {
        push_batch(f, last, msg);
        return true;
    }

    /* Allocate every part before sending any, so that running out of
     * memory drops the frame whole rather than in part. */
    unsigned s;
    for (s = 0; s < f->shards; s++) {
        if (f->count[s] == 0) {
            zmq_msg_init(&f->parts[s]);
            continue;
        }
        if (zmq_msg_init_size(&f->parts[s], CRP_FEED_HEADER_SIZE + f->bytes[s]) != 0)
            break;
        crp_feed_encode_header(zmq_msg_data(&f->parts[s]), CRP_FEED_HEADER_SIZE, 0, 0, f->count[s]);
        f->bytes[s] = CRP_FEED_HEADER_SIZE; /* from now on: write offset */
    }
    if (s < f->shards) {
        for (unsigned i = 0; i < s; i++)
            zmq_msg_close(&f->parts[i]);
        return false;
    }
    n = 0;
    crp_feed_iter_init(&it, hdr);
    while (crp_feed_next(&it, &ev)) {
        unsigned t = f->shard_of[n++];
        zmq_msg_t *p = &f->parts[t];
        f->bytes[t] += crp_feed_encode_event((unsigned char *)zmq_msg_data(p) + f->bytes[t],
                                             zmq_msg_size(p) - f->bytes[t], &ev);
    }
    for (s = 0; s < f->shards; s++) {
        if (f->count[s] > 0)
            push_batch(f, s, &f->parts[s]);
        zmq_msg_close(&f->parts[s]);
    }
    return true;
}

static void reject(crp_feed *f, crp_feed_reason r, const crp_feed_header *hdr, size_t len,
                   const char *from)
{
    atomic_fetch_add_explicit(&f->c->frames_rejected[r], 1,
                              memory_order_relaxed); /* statistics only */
    rate_log *rl = &f->reject_log[r];
    if (rate_ok(rl)) {
        crp_log(CRP_LOG_WARN,
                "feed: frame rejected (%s): %zu bytes from %s, producer %llu sequence %llu "
                "(%llu more not logged)",
                crp_feed_reason_name(r), len, from, (unsigned long long)hdr->producer,
                (unsigned long long)hdr->seq, (unsigned long long)rl->suppressed);
        rl->suppressed = 0;
    }
}

static void handle_frame(crp_feed *f, zmq_msg_t *m, const char *from)
{
    crp_feed_header hdr;
    size_t len = zmq_msg_size(m);
    crp_feed_reason r = crp_feed_decode(zmq_msg_data(m), len, f->max_frame_bytes, &hdr);
    if (r != CRP_FEED_OK) {
        reject(f, r, &hdr, len, from);
        return;
    }
    switch (seq_check(f, hdr.producer, hdr.seq)) {
    case SEQ_REPEAT:
        atomic_fetch_add_explicit(&f->c->seq_repeat, 1, memory_order_relaxed); /* statistics */
        if (rate_ok(&f->repeat_log)) {
            crp_log(CRP_LOG_WARN,
                    "feed: producer %llu sequence %llu already applied; frame skipped "
                    "(%llu more not logged)",
                    (unsigned long long)hdr.producer, (unsigned long long)hdr.seq,
                    (unsigned long long)f->repeat_log.suppressed);
            f->repeat_log.suppressed = 0;
        }
        return;
    case SEQ_GAP:
        atomic_fetch_add_explicit(&f->c->seq_gap, 1, memory_order_relaxed); /* statistics */
        if (rate_ok(&f->gap_log)) {
            crp_log(CRP_LOG_WARN,
                    "feed: producer %llu skipped to sequence %llu; frames were lost "
                    "(%llu more not logged)",
                    (unsigned long long)hdr.producer, (unsigned long long)hdr.seq,
                    (unsigned long long)f->gap_log.suppressed);
            f->gap_log.suppressed = 0;
        }
        break;
    case SEQ_APPLY:
        break;
    }
    if (!dispatch(f, m, &hdr)) {
        crp_log(CRP_LOG_ERROR,
                "feed: out of memory: frame of %u events from producer %llu "
                "dropped whole",
                hdr.count, (unsigned long long)hdr.producer);
        return;
    }
    atomic_fetch_add_explicit(&f->c->frames_applied, 1, memory_order_relaxed); /* statistics */
}

/* Reads up to `burst` messages from sock without waiting. */
static void drain_socket(crp_feed *f, void *sock, const char *from, int burst)
{
    for (int i = 0; i < burst; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (zmq_msg_more(&m)) {
            /* C2: a multipart message is rejected whole, counted once as
             * trailing_bytes. ZeroMQ delivers all parts at once, so the
             * blocking reads below return immediately. */
            crp_feed_header none;
            size_t total = zmq_msg_size(&m);
            memset(&none, 0, sizeof none);
            while (zmq_msg_more(&m)) {
                zmq_msg_close(&m);
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, sock, 0) < 0)
                    break;
                total += zmq_msg_size(&m);
            }
            zmq_msg_close(&m);
            atomic_fetch_add_explicit(&f->c->feed_multipart, 1,
                                      memory_order_relaxed); /* statistics only */
            reject(f, CRP_FEED_TRAILING_BYTES, &none, total, from);
            continue;
        }
        handle_frame(f, &m, from);
        zmq_msg_close(&m);
    }
}

/* Closes intake and flushes the writers: after the empty message nothing
 * more arrives on their pipes. Runs on the feed thread, or on the stopping
 * thread when the feed thread never started. */
static void feed_finish(crp_feed *f)
{
    /* Frames ZeroMQ has already taken in are applied rather than lost;
     * bounded, since producers may still be sending. */
    if (f->pull != NULL)
        drain_socket(f, f->pull, "feed", 4096);
    if (f->sub != NULL)
        drain_socket(f, f->sub, "feed subscription", 4096);
    if (f->pull != NULL)
        zmq_close(f->pull);
    if (f->sub != NULL)
        zmq_close(f->sub);
    f->pull = f->sub = NULL;
    for (unsigned s = 0; s < f->shards; s++) {
        if (f->push[s] == NULL)
            continue;
        while (zmq_send(f->push[s], "", 0, 0) < 0 && errno == EINTR)
            ;
        zmq_close(f->push[s]);
        f->push[s] = NULL;
    }
}

static void *feed_main(void *arg)
{
    crp_feed *f = arg;
    for (;;) {
        zmq_pollitem_t items[3] = {
            {.socket = f->pull, .events = ZMQ_POLLIN},
            {.socket = f->sub, .events = ZMQ_POLLIN},
            {.socket = NULL, .fd = f->stop_fds[0], .events = ZMQ_POLLIN},
        };
        if (zmq_poll(items, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            crp_log(CRP_LOG_ERROR, "feed: poll: %s", zmq_strerror(errno));
            break;
        }
        if (items[2].revents & ZMQ_POLLIN)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            drain_socket(f, f->pull, "feed", RECV_BURST);
        if (items[1].revents & ZMQ_POLLIN)
            drain_socket(f, f->sub, "feed subscription", RECV_BURST);
    }
    feed_finish(f);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

crp_err crp_feed_create(crp_feed **out, const crp_feed_opts *o, char *errbuf, size_t errlen)
{
    crp_err err = CRP_NOMEM;
    crp_feed *f = calloc(1, sizeof *f);
    if (f == NULL)
        return CRP_NOMEM;
    f->zctx = o->zctx;
    f->table = o->table;
    f->shards = o->shards;
    f->max_frame_bytes = o->max_frame_bytes;
    f->c = o->counters;
    f->stop_fds[0] = f->stop_fds[1] = -1;
    f->push = calloc(o->shards, sizeof *f->push);
    f->producers = calloc(PRODUCERS_CAP, sizeof *f->producers);
    f->shard_of = malloc(CRP_FEED_COUNT_MAX);
    f->count = calloc(o->shards, sizeof *f->count);
    f->bytes = calloc(o->shards, sizeof *f->bytes);
    f->parts = calloc(o->shards, sizeof *f->parts);
    if (f->push == NULL || f->producers == NULL || f->shard_of == NULL || f->count == NULL ||
        f->bytes == NULL || f->parts == NULL) {
        snprintf(errbuf, errlen, "feed: out of memory");
        goto out_destroy;
    }
    if (pipe(f->stop_fds) != 0) {
        snprintf(errbuf, errlen, "feed: pipe: %s", strerror(errno));
        err = CRP_SYS;
        goto out_destroy;
    }

    err = CRP_SYS;
    f->pull = zmq_socket(o->zctx, ZMQ_PULL);
    f->sub = zmq_socket(o->zctx, ZMQ_SUB);
    if (f->pull == NULL || f->sub == NULL) {
        snprintf(errbuf, errlen, "feed: cannot create sockets: %s", zmq_strerror(errno));
        goto out_destroy;
    }
    /* Frames over twice the limit are refused by ZeroMQ itself (the peer is
     * disconnected), so a huge frame never gets allocated. */
    int64_t maxmsg = (int64_t)(2u * o->max_frame_bytes);
    void *ext[2] = {f->pull, f->sub};
    for (int i = 0; i < 2; i++) {
        (void)zmq_setsockopt(ext[i], ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        set_int(ext[i], ZMQ_LINGER, 0);
    }
    (void)zmq_setsockopt(f->sub, ZMQ_SUBSCRIBE, "", 0);
    err = crp_zmq_bind_list(f->pull, o->bind, false, "[feed]", errbuf, errlen);
    if (err == CRP_OK)
        err = crp_zmq_bind_list(f->sub, o->connect, true, "[feed]", errbuf, errlen);
    if (err != CRP_OK)
        goto out_destroy;

    for (unsigned s = 0; s < o->shards; s++) {
        f->push[s] = zmq_socket(o->zctx, ZMQ_PUSH);
        if (f->push[s] == NULL) {
            snprintf(errbuf, errlen, "feed: cannot create sockets: %s", zmq_strerror(errno));
            err = CRP_SYS;
            goto out_destroy;
        }
        set_int(f->push[s], ZMQ_SNDHWM, o->batch_hwm);
        /* Every batch is read before the writer exits (shutdown protocol);
         * the bounded linger only guards against a bug. */
        set_int(f->push[s], ZMQ_LINGER, 1000);
        if (zmq_connect(f->push[s], o->writer_data[s]) != 0) {
            snprintf(errbuf, errlen, "feed: connect to writer %u: %s", s, zmq_strerror(errno));
            err = CRP_SYS;
            goto out_destroy;
        }
    }
    *out = f;
    return CRP_OK;

out_destroy:
    crp_feed_destroy(&f);
    return err;
}

crp_err crp_feed_start(crp_feed *f)
{
    if (crp_thread_start(&f->thread, feed_main, f, "crp-feed") != 0)
        return CRP_SYS;
    f->started = true;
    return CRP_OK;
}

void crp_feed_stop(crp_feed *f)
{
    if (f == NULL || f->stopped)
        return;
    f->stopped = true;
    if (f->started) {
        char b = 's';
        while (write(f->stop_fds[1], &b, 1) < 0 && errno == EINTR)
            ;
        pthread_join(f->thread, NULL);
        f->started = false;
    } else {
        feed_finish(f);
    }
}

void crp_feed_destroy(crp_feed **fp)
{
    crp_feed *f = *fp;
    if (f == NULL)
        return;
    if (f->started)
        crp_feed_stop(f);
    /* Sockets left here were never handed to a thread. */
    if (f->pull != NULL)
        zmq_close(f->pull);
    if (f->sub != NULL)
        zmq_close(f->sub);
    for (unsigned s = 0; f->push != NULL && s < f->shards; s++) {
        if (f->push[s] != NULL)
            zmq_close(f->push[s]);
    }
    for (int i = 0; i < 2; i++) {
        if (f->stop_fds[i] >= 0)
            close(f->stop_fds[i]);
    }
    free(f->push);
    free(f->producers);
    free(f->shard_of);
    free(f->count);
    free(f->bytes);
    free(f->parts);
    free(f);
    *fp = NULL;
}
