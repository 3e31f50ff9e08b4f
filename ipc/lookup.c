/* The lookup server (crp/lookup_server.h).
 *
 * THREADS AND SOCKETS. crp_lookup_server_start() creates the ROUTER in the
 * caller's thread, binds it to every [lookup] endpoint and to one private
 * endpoint, inproc://crp-lookup-<address>, then hands it to the server
 * thread, its only user until the thread exits and closes it.
 *
 * The thread blocks in zmq_msg_recv() on the ROUTER alone: no zmq_poll(),
 * which would cost about 2 us per round trip (measured: the poll version
 * ran at 1.12x a raw echo, this one at 1.00x). To stop it,
 * crp_lookup_server_stop() sets `stopping` and then sends one message from
 * a short-lived DEALER of its own thread to the inproc endpoint: the thread
 * wakes, sees the flag, and leaves without answering. Only code in this
 * process can reach an inproc endpoint, and a message from anywhere else
 * finds the flag clear, so nothing on the network can stop the server. A
 * context shut down by its owner makes the receive fail with ETERM, which
 * also ends the thread.
 *
 * HOT PATH. For each message:
 *
 *   1. frames are received into parts[], reused for every message (a
 *      receive replaces the previous content): parts[0..n-1) is the
 *      envelope, parts[n-1] the body;
 *   2. the body is judged where ZeroMQ received it (crp_lookup_decode,
 *      choice C4);
 *   3. for a good request every id is looked up into verdicts[] (also
 *      reused) while the exact reply size is summed; then the reply is
 *      encoded straight into a zmq_msg of that size: no copy;
 *   4. the envelope frames are sent back by moving parts[i] (zero copy),
 *      then the reply frame. The ROUTER drops replies to peers that left
 *      and never blocks on a full peer (not ZMQ_ROUTER_MANDATORY), so one
 *      slow client cannot stall the others.
 *
 * The server's counters are written by the server thread only and read by
 * anyone: relaxed atomics, statistics only.
 */
/* pthread_setname_np() is a GNU extension. */
#define _GNU_SOURCE

#include "crp/lookup_server.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "crp/wire.h"

/* Ids a batch hashes and prefetches ahead of its lookups. Measured on a
 * 1M-connector table (4096 random ids, cold cache): anonymous memory
 * 82 -> 41 ns per lookup with 8, no better with 16; POSIX shm without huge
 * pages 111 -> 85 ns with 8, worse with 16 (page walks, not cache misses,
 * are then the limit). */
#define LOOKAHEAD 8

/* Longest endpoint of the bind list, and of the control endpoint name. */
#define ENDPOINT_MAX 1024
#define CTL_NAME_MAX 64

struct crp_lookup_server {
    void *zctx;
    void *router; /* the server thread's, once started */
    char ctl_name[CTL_NAME_MAX];
    /* Set by stop before it sends the wake-up message; the server thread
     * reads it after each receive (release/acquire pair; the flag itself is
     * all they publish). */
    _Atomic bool stopping;
    const crp_table *table;
    crp_engine *engine;
    crp_lookup_hooks hooks;
    pthread_t thread;
    bool started;

    /* Server thread only: reused by every request. */
    zmq_msg_t parts[CRP_LOOKUP_ENVELOPE_MAX + 1];
    crp_verdict *verdicts; /* CRP_LOOKUP_COUNT_MAX entries */

    /* Written by the server thread, read by crp_lookup_server_stats_get()
     * from any thread. Relaxed everywhere: statistics only, nothing else is
     * published through them. */
    _Atomic uint64_t requests;
    _Atomic uint64_t lookups;
    _Atomic uint64_t stats;
    _Atomic uint64_t malformed;
    _Atomic uint64_t unsupported;
    _Atomic uint64_t dropped;
};

/* Adds to a counter only its writer, the server thread, changes: a relaxed
 * load and store is enough (statistics only) and cheaper than an RMW. */
static inline void count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* ---- replies --------------------------------------------------------- */

/* Builds a 14-byte reply with a non-zero status (small enough for ZeroMQ to
 * keep inside the message: no allocation). */
static bool build_status(zmq_msg_t *reply, crp_lookup_status status, uint32_t request_id)
{
    if (zmq_msg_init_size(reply, CRP_REPLY_HEADER_SIZE) != 0)
        return false;
    crp_reply_writer w;
    bool ok =
        crp_reply_begin(&w, zmq_msg_data(reply), CRP_REPLY_HEADER_SIZE, (int)status, request_id);
    size_t len = crp_reply_finish(&w);
    /* Proven: 14 bytes always hold a status reply. */
    assert(ok && len == CRP_REPLY_HEADER_SIZE);
    (void)ok;
    (void)len;
    return true;
}

/* The stats reply: the engine's JSON object with this server's refusals
 * added as the last keys (docs/protocol.md C7), spliced in before its
 * closing brace so the server needs no JSON library. */
static bool build_stats(crp_lookup_server *s, zmq_msg_t *reply)
{
    char *json = s->hooks.stats_json != NULL ? s->hooks.stats_json(s->engine) : NULL;
    const char *text = json != NULL ? json : "{}";
    size_t len = strlen(text);
    char extra[160];
    int n =
        snprintf(extra, sizeof extra,
                 "%s\"lookup_malformed\":%llu,\"lookup_unsupported\":%llu,"
                 "\"lookup_dropped\":%llu}",
                 len > 2 ? "," : "",
                 (unsigned long long)atomic_load_explicit(&s->malformed, memory_order_relaxed),
                 (unsigned long long)atomic_load_explicit(&s->unsupported, memory_order_relaxed),
                 (unsigned long long)atomic_load_explicit(&s->dropped, memory_order_relaxed));
    /* The object ends with '}' (crp_engine_stats_json, or "{}"). */
    if (len > 0 && text[len - 1] == '}' && n > 0 && (size_t)n < sizeof extra)
        len--;
    else
        n = 0;
    bool ok = zmq_msg_init_size(reply, 4 + len + (size_t)n) == 0;
    if (ok) {
        memcpy(zmq_msg_data(reply), CRP_STATS_MAGIC, 4);
        memcpy((char *)zmq_msg_data(reply) + 4, text, len);
        memcpy((char *)zmq_msg_data(reply) + 4 + len, extra, (size_t)n);
    }
    free(json);
    count(&s->stats, 1);
    return ok;
}

static bool build_lookup(crp_lookup_server *s, const void *body, size_t body_len, zmq_msg_t *reply)
{
    crp_lookup_req req;
    crp_lookup_status st = crp_lookup_decode(body, body_len, &req);
    if (st != CRP_LOOKUP_OK) {
        count(st == CRP_LOOKUP_UNSUPPORTED ? &s->unsupported : &s->malformed, 1);
        return build_status(reply, st, req.request_id);
    }

    /* Pass 1: look every id up and sum the reply's exact size, so the reply
     * can be encoded in place in a message of that size. A batch is
     * pipelined: id i is hashed and its slot prefetched LOOKAHEAD ids
     * before it is looked up, so up to LOOKAHEAD memory misses overlap
     * instead of being paid one after the other. */
    bool text = (req.flags & CRP_LOOKUP_FLAG_TEXT) != 0;
    size_t n = req.count;
    size_t len = CRP_REPLY_HEADER_SIZE + n * CRP_REPLY_RESULT_MIN_SIZE;
    crp_key keys[LOOKAHEAD];
    crp_lookup_iter it;
    crp_lookup_iter_init(&it, &req);
    for (size_t i = 0; i < n + LOOKAHEAD; i++) {
        if (i >= LOOKAHEAD) {
            crp_verdict *v = &s->verdicts[i - LOOKAHEAD];
            crp_table_lookup(s->table, &keys[i % LOOKAHEAD], v);
            if (text && v->state == CRP_STATE_RESTRICTED)
                len += CRP_SMTP_TEXT_LEN;
        }
        const char *id;
        size_t id_len;
        if (i < n && crp_lookup_next_id(&it, &id, &id_len)) {
            keys[i % LOOKAHEAD] = crp_table_key(s->table, id, id_len);
            if (n > 1)
                crp_table_prefetch(s->table, &keys[i % LOOKAHEAD], false);
        }
    }

    /* Pass 2: encode from the verdicts, which stay as read in pass 1. */
    if (zmq_msg_init_size(reply, len) != 0)
        return false;
    crp_reply_writer w;
    bool ok = crp_reply_begin(&w, zmq_msg_data(reply), len, CRP_LOOKUP_OK, req.request_id);
    for (size_t i = 0; i < n; i++) {
        const crp_verdict *v = &s->verdicts[i];
        /* The writer zeroes reasons and since for every state but
         * RESTRICTED (choice C5), so the verdict goes in as it is. */
        ok =
            ok && crp_reply_add(&w, v->state, v->reasons, v->since_ms, text ? CRP_SMTP_TEXT : NULL);
    }
    size_t written = crp_reply_finish(&w);
    /* Proven: the size was summed from these very verdicts, and the table
     * only stores states 0..3 and reason bits 0..5. */
    assert(ok && written == len);
    (void)ok;
    (void)written;
    count(&s->lookups, n);
    /* Counted per request (one relaxed add in the engine), so the stats
     * always include every lookup answered before them. */
    if (s->hooks.count_lookups != NULL)
        s->hooks.count_lookups(s->engine, n);
    return true;
}

/* ---- one message ------------------------------------------------------ */

/* Waits for one whole message and receives it into parts[]. Returns the
 * number of frames, 0 when it was dropped for having too many frames, or
 * -1 when the socket is unusable (ETERM: the context was shut down). */
static int recv_message(crp_lookup_server *s)
{
    while (zmq_msg_recv(&s->parts[0], s->router, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    size_t n = 1;
    while (zmq_msg_more(&s->parts[n - 1])) {
        if (n == CRP_LOOKUP_ENVELOPE_MAX + 1) {
            /* Too many frames: read the rest into the last part and drop
             * the message unanswered (C6). Multipart messages arrive whole,
             * so these receives do not wait. */
            zmq_msg_t *sink = &s->parts[n - 1];
            do {
                if (zmq_msg_recv(sink, s->router, 0) < 0 && errno != EINTR)
                    return -1;
            } while (zmq_msg_more(sink));
            count(&s->dropped, 1);
            return 0;
        }
        if (zmq_msg_recv(&s->parts[n], s->router, 0) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        n++;
    }
    return (int)n;
}

/* Answers the message in parts[0..n). Returns false on ETERM. */
static bool handle(crp_lookup_server *s, int n)
{
    zmq_msg_t *body = &s->parts[n - 1];
    if (n < 2) {
        /* A ROUTER always prepends the routing id; without one there is
         * nobody to answer. */
        count(&s->dropped, 1);
        return true;
    }
    const void *data = zmq_msg_data(body);
    size_t len = zmq_msg_size(body);

    zmq_msg_t reply;
    bool built = crp_lookup_is_stats(data, len) ? build_stats(s, &reply)
                                                : build_lookup(s, data, len, &reply);
    /* The body is no longer needed: release it now rather than when the
     * part is next reused, so a large request does not linger. */
    zmq_msg_close(body);
    zmq_msg_init(body);
    if (!built) {
        count(&s->dropped, 1);
        return true;
    }

    /* Counted before the send, so a client that got its reply also sees
     * the count (the round trip through ZeroMQ orders the two). */
    count(&s->requests, 1);
    for (int i = 0; i < n - 1; i++) {
        /* Moves the frame: after a successful send the part is empty. A
         * failure here is a vanished peer (the ROUTER drops the rest of the
         * message itself) or ETERM. */
        if (zmq_msg_send(&s->parts[i], s->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&reply);
            return errno != ETERM;
        }
    }
    if (zmq_msg_send(&reply, s->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&reply);
        return errno != ETERM;
    }
    return true;
}

/* ---- the thread -------------------------------------------------------- */

static void *serve(void *arg)
{
    crp_lookup_server *s = arg;
#ifdef __GLIBC__
    (void)pthread_setname_np(pthread_self(), "crp-lookup");
#endif
    for (;;) {
        int n = recv_message(s);
        if (n < 0)
            break; /* ETERM: the context is shutting down */
        /* Acquire pairs with the release in crp_lookup_server_stop(). */
        if (atomic_load_explicit(&s->stopping, memory_order_acquire))
            break; /* the wake-up message of crp_lookup_server_stop() */
        if (n > 0 && !handle(s, n))
            break;
    }
    /* The thread owns the socket: it closes it, so a context shut down by
     * its owner can terminate as soon as this thread is gone. */
    zmq_close(s->router);
    s->router = NULL;
    return NULL;
}

/* ---- start and stop ---------------------------------------------------- */

/* Binds sock to every endpoint of the comma list. */
static crp_err bind_all(void *sock, const char *list)
{
    unsigned bound = 0;
    const char *p = list;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *a = p;
        const char *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a) {
            char ep[ENDPOINT_MAX];
            if ((size_t)(b - a) >= sizeof ep)
                return CRP_INVAL;
            memcpy(ep, a, (size_t)(b - a));
            ep[b - a] = '\0';
            if (zmq_bind(sock, ep) != 0)
                return errno == EINVAL || errno == EPROTONOSUPPORT || errno == ENOCOMPATPROTO
                           ? CRP_INVAL
                           : CRP_SYS;
            bound++;
        }
        p = *end == ',' ? end + 1 : end;
    }
    return bound > 0 ? CRP_OK : CRP_INVAL;
}

static void set_int(void *sock, int opt, int v)
{
    /* These options exist in every libzmq we build with; a failure would
     * be a programming error, and the defaults are safe anyway. */
    (void)zmq_setsockopt(sock, opt, &v, sizeof v);
}

crp_err crp_lookup_server_start(crp_lookup_server **out, void *zmq_ctx, const char *binds,
                                const crp_table *t, crp_engine *stats_source,
                                const crp_lookup_hooks *hooks)
{
    if (out == NULL || zmq_ctx == NULL || binds == NULL || t == NULL)
        return CRP_INVAL;
    crp_lookup_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return CRP_NOMEM;
    crp_err err = CRP_NOMEM;
    s->verdicts = malloc(CRP_LOOKUP_COUNT_MAX * sizeof *s->verdicts);
    if (s->verdicts == NULL)
        goto out_free;
    s->zctx = zmq_ctx;
    s->table = t;
    s->engine = stats_source;
    if (hooks != NULL)
        s->hooks = *hooks;
    for (size_t i = 0; i < CRP_LOOKUP_ENVELOPE_MAX + 1; i++)
        zmq_msg_init(&s->parts[i]);

    err = CRP_SYS;
    s->router = zmq_socket(zmq_ctx, ZMQ_ROUTER);
    if (s->router == NULL)
        goto out_free;
    set_int(s->router, ZMQ_LINGER, 0);
    int64_t max = CRP_LOOKUP_REQ_MAX_SIZE;
    (void)zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if ((err = bind_all(s->router, binds)) != CRP_OK)
        goto out_close_router;

    err = CRP_SYS;
    snprintf(s->ctl_name, sizeof s->ctl_name, "inproc://crp-lookup-%p", (void *)s);
    if (zmq_bind(s->router, s->ctl_name) != 0)
        goto out_close_router;

    /* The thread must not take the process's signals (the daemon's main
     * thread handles them): it starts with all of them blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, serve, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        errno = rc;
        goto out_close_router;
    }
    s->started = true;
    *out = s;
    return CRP_OK;

out_close_router : {
    /* Closing unbinds every endpoint (and removes ipc socket files). */
    int e = errno;
    zmq_close(s->router);
    errno = e;
}
out_free:
    for (size_t i = 0; i < CRP_LOOKUP_ENVELOPE_MAX + 1; i++)
        zmq_msg_close(&s->parts[i]);
    free(s->verdicts);
    free(s);
    return err;
}

void crp_lookup_server_stop(crp_lookup_server **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    crp_lookup_server *s = *sp;
    if (s->started) {
        /* Release pairs with the acquire after each receive in serve(). */
        atomic_store_explicit(&s->stopping, true, memory_order_release);
        /* A socket of this thread, used once, to wake the server thread. If
         * the context was shut down, creating or sending fails with ETERM
         * and the thread has left (or is leaving) on ETERM anyway. */
        void *wake = zmq_socket(s->zctx, ZMQ_DEALER);
        if (wake != NULL) {
            set_int(wake, ZMQ_LINGER, 0);
            if (zmq_connect(wake, s->ctl_name) == 0)
                (void)zmq_send(wake, "", 0, 0);
        }
        pthread_join(s->thread, NULL);
        if (wake != NULL)
            zmq_close(wake);
    }
    for (size_t i = 0; i < CRP_LOOKUP_ENVELOPE_MAX + 1; i++)
        zmq_msg_close(&s->parts[i]);
    free(s->verdicts);
    free(s);
    *sp = NULL;
}

void crp_lookup_server_stats_get(const crp_lookup_server *s, crp_lookup_server_stats *out)
{
    /* Relaxed: statistics only. The casts drop const for C11's atomic load
     * signature; loading does not modify. */
    out->requests = atomic_load_explicit((_Atomic uint64_t *)&s->requests, memory_order_relaxed);
    out->lookups = atomic_load_explicit((_Atomic uint64_t *)&s->lookups, memory_order_relaxed);
    out->stats = atomic_load_explicit((_Atomic uint64_t *)&s->stats, memory_order_relaxed);
    out->malformed = atomic_load_explicit((_Atomic uint64_t *)&s->malformed, memory_order_relaxed);
    out->unsupported =
        atomic_load_explicit((_Atomic uint64_t *)&s->unsupported, memory_order_relaxed);
    out->dropped = atomic_load_explicit((_Atomic uint64_t *)&s->dropped, memory_order_relaxed);
}
