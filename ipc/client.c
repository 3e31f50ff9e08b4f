/* libconnrep (connrep.h): lookups over ZeroMQ or in the shared table.
 *
 * This file runs inside relay workers, so it follows their rules (DESIGN.md
 * section 2): it links only the table's read path, the wire codec and
 * libzmq; it starts no thread (a ZeroMQ client's context has libzmq's I/O
 * and reaper threads), installs no signal handler, never exits, and every
 * failure is a negative return.
 *
 * SHM PATH. The client maps the engine's table read-only (crp_table_attach)
 * and answers from it with crp_table_lookup(): a hash and a probe of
 * shared memory, no system call, no lock. The engine marks its table
 * retired when it stops and a new engine marks the old object retired
 * when it replaces it, so one acquire load per lookup (crp_table_retired)
 * tells the client to re-attach; the new object has another generation.
 * While no new table exists the client answers CONNREP_EUNAVAIL, as a
 * ZeroMQ client does when the engine is down: a retired table is no longer
 * updated, so its answers could be stale (an unblock already journaled by
 * the engine would not show).
 *
 * ZEROMQ PATH. One DEALER socket per client, in a context of its own (so a
 * relay's other ZeroMQ use is unaffected and connrep_close() can terminate
 * it without waiting). Requests are sent without an empty delimiter (C6),
 * so a reply is one frame; any leading frame is skipped. The socket has
 * ZMQ_IMMEDIATE set: a request is queued only on a completed connection, so
 * "no engine" is seen as CONNREP_EUNAVAIL instead of a request that waits
 * in a queue for an engine that may come much later. Each request carries
 * a fresh request id (never 0); a reply whose id is not awaited is a late
 * reply to an earlier call and is discarded. After a timeout the socket is
 * closed (dropping whatever it still holds) and a new one connected, so a
 * late reply cannot even reach the next call.
 *
 * The client does not ask for the SMTP text on the wire: it is one
 * constant (docs/protocol.md 2.4), so a restricted result points to the
 * library's static copy, and replies stay 58 bytes per restriction shorter.
 */
#include "connrep.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "crp/table.h"
#include "crp/wire.h"

/* Requests of one batch in flight at once: enough to keep the engine busy
 * while replies travel back, few enough to bound the memory libzmq holds. */
#define WINDOW 4

/* The public constants restate the wire's; keep them equal. */
_Static_assert(sizeof(CONNREP_SMTP_TEXT) == sizeof(CRP_SMTP_TEXT), "SMTP text");
_Static_assert(CONNREP_ID_MAX == CRP_WIRE_ID_MAX, "id limit");
_Static_assert(CONNREP_BATCH_MAX == CRP_LOOKUP_COUNT_MAX, "batch limit");
_Static_assert((int)CONNREP_STATE_RESTRICTED == (int)CRP_STATE_RESTRICTED, "states");
_Static_assert((int)CONNREP_REASON_MANUAL == (int)CRP_REASON_MANUAL, "reasons");

static const char smtp_text[] = CONNREP_SMTP_TEXT;

enum client_kind { KIND_ZMQ, KIND_SHM };

struct connrep_client {
    enum client_kind kind;
    int timeout_ms;

    /* ZeroMQ path. */
    void *zctx;
    void *sock; /* NULL when re-creating it failed: the next call retries */
    char *endpoint;
    uint32_t next_id;
    crp_lookup_id *ids; /* one request's ids in the codec's type; lazily */

    /* Shared-memory path. */
    crp_table *table;
    uint64_t generation;
    char shm_name[256];
};

/* ---- errors ----------------------------------------------------------- */

CONNREP_API const char *connrep_strerror(int err)
{
    switch (err) {
#define CONNREP_ERR_TEXT(name, value, text)                                                        \
    case CONNREP_##name:                                                                           \
        return text;
        CONNREP_ERR_MAP(CONNREP_ERR_TEXT)
#undef CONNREP_ERR_TEXT
    }
    return "unknown error";
}

CONNREP_API const char *connrep_err_name(int err)
{
    switch (err) {
#define CONNREP_ERR_NAME(name, value, text)                                                        \
    case CONNREP_##name:                                                                           \
        return "CONNREP_" #name;
        CONNREP_ERR_MAP(CONNREP_ERR_NAME)
#undef CONNREP_ERR_NAME
    }
    return "CONNREP_UNKNOWN";
}

/* ---- results ---------------------------------------------------------- */

/* Stores one answer as both paths report it: reasons, since and the text
 * only for a restriction (choice C5). */
static inline void result_set(connrep_result *r, unsigned state, unsigned reasons,
                              uint64_t since_ms)
{
    r->state = (int)state;
    if (state == CRP_STATE_RESTRICTED) {
        r->reasons = reasons;
        r->since_ms = since_ms;
        r->smtp_text = smtp_text;
    } else {
        r->reasons = 0;
        r->since_ms = 0;
        r->smtp_text = NULL;
    }
}

static void results_clear(connrep_result *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        result_set(&out[i], CRP_STATE_UNKNOWN, 0, 0);
}

static bool id_ok(const char *id, size_t len)
{
    return id != NULL && len >= 1 && len <= CRP_WIRE_ID_MAX;
}

/* ---- shared-memory path ---------------------------------------------- */

/* Maps the table again after the engine retired the one we hold. Returns 0
 * or CONNREP_EUNAVAIL (no new table yet); keeps the old mapping until a new
 * one is there, so every later lookup retries. */
static int shm_reattach(connrep_client *c)
{
    crp_table *t = NULL;
    if (crp_table_attach(&t, c->shm_name) != CRP_OK)
        return CONNREP_EUNAVAIL;
    /* Between the engine's retire and unlink we may have mapped the very
     * object we hold, or another retired one: not the new engine's. */
    if (crp_table_retired(t) || crp_table_generation(t) == c->generation) {
        crp_table_destroy(&t);
        return CONNREP_EUNAVAIL;
    }
    crp_table_destroy(&c->table);
    c->table = t;
    c->generation = crp_table_generation(t);
    return 0;
}

static inline int shm_check(connrep_client *c)
{
    /* The one atomic load that notices a replaced or stopped engine. */
    if (__builtin_expect(!crp_table_retired(c->table), 1))
        return 0;
    return shm_reattach(c);
}

static inline void shm_one(const crp_table *t, const char *id, size_t len, connrep_result *out)
{
    crp_key k = crp_table_key(t, id, len);
    crp_verdict v;
    crp_table_lookup(t, &k, &v);
    result_set(out, v.state, v.reasons, v.since_ms);
}

/* A batch is pipelined: id i is hashed and its slot prefetched LOOKAHEAD
 * ids before it is looked up, so memory misses overlap (the engine's
 * lookup server does the same; see ipc/lookup.c for the measurements). */
#define LOOKAHEAD 8

static void shm_batch(const crp_table *t, const connrep_id *ids, size_t n, connrep_result *out)
{
    crp_key ring[LOOKAHEAD];
    for (size_t i = 0; i < n + LOOKAHEAD; i++) {
        if (i >= LOOKAHEAD) {
            crp_verdict v;
            crp_table_lookup(t, &ring[i % LOOKAHEAD], &v);
            result_set(&out[i - LOOKAHEAD], v.state, v.reasons, v.since_ms);
        }
        if (i < n) {
            ring[i % LOOKAHEAD] = crp_table_key(t, ids[i].id, ids[i].len);
            crp_table_prefetch(t, &ring[i % LOOKAHEAD], false);
        }
    }
}

/* ---- ZeroMQ path ------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void setopt_int(void *sock, int opt, int v)
{
    /* Options every supported libzmq knows; a failure leaves a safe default. */
    (void)zmq_setsockopt(sock, opt, &v, sizeof v);
}

/* Creates and connects the client's socket. Returns 0 or CONNREP_ESYS. */
static int sock_open(connrep_client *c)
{
    void *s = zmq_socket(c->zctx, ZMQ_DEALER);
    if (s == NULL)
        return CONNREP_ESYS;
    setopt_int(s, ZMQ_LINGER, 0);
    setopt_int(s, ZMQ_IMMEDIATE, 1);
    /* Reconnect quickly after an engine restart; back off to 1 s. */
    setopt_int(s, ZMQ_RECONNECT_IVL, 10);
    setopt_int(s, ZMQ_RECONNECT_IVL_MAX, 1000);
    /* Nothing larger than the largest valid reply is accepted, so a wrong
     * peer cannot make us buffer a huge message. */
    int64_t max = (int64_t)crp_reply_max_size(CRP_LOOKUP_COUNT_MAX, true);
    (void)zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if (zmq_connect(s, c->endpoint) != 0) {
        int e = errno;
        zmq_close(s);
        errno = e;
        return CONNREP_ESYS;
    }
    c->sock = s;
    return 0;
}

/* Drops the socket and whatever it holds (queued requests, late replies)
 * and connects a new one. */
static void sock_reset(connrep_client *c)
{
    if (c->sock != NULL)
        zmq_close(c->sock);
    c->sock = NULL;
    (void)sock_open(c);
}

/* Sets a send or receive timeout to what is left until the deadline and
 * returns it (0 once the deadline passed). Blocking calls with a timeout
 * are cheaper than zmq_poll() and a retry: one wait inside libzmq. */
static int arm_timeout(connrep_client *c, int opt, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    int ms = left <= 0 ? 0 : left > 3600000 ? 3600000 : (int)left;
    (void)zmq_setsockopt(c->sock, opt, &ms, sizeof ms);
    return ms;
}

static uint32_t take_id(connrep_client *c)
{
    /* 0 is what the engine answers when it could not read an id; never
     * use it, so such a reply is not mistaken for one of ours. */
    if (c->next_id == 0)
        c->next_id = 1;
    return c->next_id++;
}

/* Sends one request for ids[0..n), encoded straight into the message
 * ZeroMQ sends. Returns 0, CONNREP_EUNAVAIL (no connection to the engine
 * by the deadline), CONNREP_ENOMEM or CONNREP_ESYS. */
static int send_request(connrep_client *c, const crp_lookup_id *ids, size_t n, uint32_t rid,
                        int64_t deadline)
{
    size_t size = CRP_LOOKUP_HEADER_SIZE;
    for (size_t i = 0; i < n; i++)
        size += 1 + ids[i].len;
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, size) != 0)
        return CONNREP_ENOMEM;
    size_t w = crp_lookup_encode_req(zmq_msg_data(&m), size, 0, rid, ids, n);
    if (w != size) {
        /* Proven impossible: ids were validated and the size computed. */
        zmq_msg_close(&m);
        return CONNREP_EINVAL;
    }
    for (;;) {
        /* With ZMQ_IMMEDIATE a send waits only while no connection is up
         * (or, rarely, the queue is full). */
        int left = arm_timeout(c, ZMQ_SNDTIMEO, deadline);
        if (zmq_msg_send(&m, c->sock, 0) >= 0)
            return 0;
        if (errno == EINTR || (errno == EAGAIN && left > 0))
            continue; /* woke early: wait for the rest */
        int err = errno == EAGAIN ? CONNREP_EUNAVAIL : CONNREP_ESYS;
        zmq_msg_close(&m);
        return err;
    }
}

/* Receives one whole message and leaves its last frame in *m. Returns 1,
 * 0 when the deadline passed, or CONNREP_ESYS. */
static int recv_reply(connrep_client *c, zmq_msg_t *m, int64_t deadline)
{
    for (;;) {
        int left = arm_timeout(c, ZMQ_RCVTIMEO, deadline);
        if (zmq_msg_recv(m, c->sock, 0) >= 0)
            break;
        if (errno == EINTR || (errno == EAGAIN && left > 0))
            continue; /* a signal, or timed out a little early */
        return errno == EAGAIN ? 0 : CONNREP_ESYS;
    }
    /* The body is the last frame; the rest of a multipart message is
     * already here, so these receives do not wait. */
    while (zmq_msg_more(m)) {
        if (zmq_msg_recv(m, c->sock, 0) < 0 && errno != EINTR)
            return CONNREP_ESYS;
    }
    return 1;
}

static int status_error(unsigned status)
{
    switch (status) {
    case CRP_LOOKUP_OVERLOADED:
        return CONNREP_EOVERLOAD;
    case CRP_LOOKUP_MALFORMED:
    case CRP_LOOKUP_UNSUPPORTED:
        return CONNREP_EREJECTED;
    default:
        return CONNREP_EPROTO;
    }
}

/* A request of the current call that awaits its reply. */
typedef struct pending {
    uint32_t rid;
    size_t first; /* index of its first id in the call's arrays */
    size_t count;
} pending;

/* Copies one chunk of the caller's ids into the codec's type. */
static const crp_lookup_id *chunk_ids(connrep_client *c, const connrep_id *ids, size_t n,
                                      crp_lookup_id *one)
{
    crp_lookup_id *dst = n == 1 ? one : c->ids;
    for (size_t i = 0; i < n; i++) {
        dst[i].id = ids[i].id;
        dst[i].len = ids[i].len;
    }
    return dst;
}

/* Looks up ids[0..n) (already validated) over ZeroMQ, up to WINDOW requests
 * of at most CRP_LOOKUP_COUNT_MAX ids in flight. */
static int zmq_lookup(connrep_client *c, const connrep_id *ids, size_t n, connrep_result *out)
{
    pending win[WINDOW];
    size_t inflight = 0;
    size_t next = 0; /* first id not yet sent */
    size_t done = 0; /* ids answered */
    int64_t deadline = now_ms() + c->timeout_ms;
    int err = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);

    if (n > 1 && c->ids == NULL && (c->ids = malloc(CRP_LOOKUP_COUNT_MAX * sizeof *c->ids)) == NULL)
        err = CONNREP_ENOMEM;
    else if (c->sock == NULL)
        err = sock_open(c); /* the previous reset could not make one */
    if (err != 0)
        goto out;

    while (done < n) {
        while (next < n && inflight < WINDOW) {
            size_t k = n - next < CRP_LOOKUP_COUNT_MAX ? n - next : CRP_LOOKUP_COUNT_MAX;
            crp_lookup_id one;
            const crp_lookup_id *chunk = chunk_ids(c, ids + next, k, &one);
            uint32_t rid = take_id(c);
            if ((err = send_request(c, chunk, k, rid, deadline)) != 0)
                goto out;
            win[inflight++] = (pending){.rid = rid, .first = next, .count = k};
            next += k;
        }

        int r = recv_reply(c, &m, deadline);
        if (r <= 0) {
            err = r == 0 ? CONNREP_ETIMEOUT : r;
            /* Whatever is still on its way belongs to this failed call. */
            sock_reset(c);
            goto out;
        }
        crp_reply rep;
        crp_err derr = crp_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), &rep);
        size_t w = 0;
        while (w < inflight && win[w].rid != rep.request_id)
            w++;
        if (w == inflight) {
            /* Not awaited: a late reply to an earlier call (discard), or
             * the engine could not read our request id at all (it answers
             * 0, which we never send). */
            if (derr == CRP_OK && rep.status != CRP_LOOKUP_OK && rep.request_id == 0) {
                err = status_error(rep.status);
                goto out;
            }
            continue;
        }
        if (derr != CRP_OK) {
            err = CONNREP_EPROTO;
            goto out;
        }
        if (rep.status != CRP_LOOKUP_OK) {
            err = status_error(rep.status);
            goto out;
        }
        if (rep.count != win[w].count) {
            err = CONNREP_EPROTO;
            goto out;
        }
        crp_reply_iter it;
        crp_reply_iter_init(&it, &rep);
        crp_reply_result res;
        connrep_result *dst = out + win[w].first;
        while (crp_reply_next(&it, &res))
            result_set(dst++, res.state, res.reasons, res.since_ms);
        done += win[w].count;
        win[w] = win[--inflight];
        /* The timeout bounds the wait for each reply, not the whole batch. */
        deadline = now_ms() + c->timeout_ms;
    }

out:
    zmq_msg_close(&m);
    if (err != 0)
        results_clear(out, n);
    return err;
}

/* ---- public API ------------------------------------------------------- */

static connrep_client *open_shm(connrep_client *c, const char *name)
{
    /* A POSIX shm name: one leading slash, no other. */
    size_t len = strlen(name);
    if (name[0] != '/' || len < 2 || len >= sizeof c->shm_name || strchr(name + 1, '/')) {
        errno = EINVAL;
        return NULL;
    }
    memcpy(c->shm_name, name, len + 1);
    crp_err err = crp_table_attach(&c->table, c->shm_name);
    switch (err) {
    case CRP_OK:
        break;
    case CRP_SYS:
        return NULL; /* errno from shm_open or mmap */
    case CRP_NOMEM:
        errno = ENOMEM;
        return NULL;
    case CRP_BADFILE:
        errno = EPROTO;
        return NULL;
    default:
        errno = EINVAL;
        return NULL;
    }
    c->kind = KIND_SHM;
    c->generation = crp_table_generation(c->table);
    return c;
}

static connrep_client *open_zmq(connrep_client *c, const char *endpoint)
{
    c->kind = KIND_ZMQ;
    c->endpoint = strdup(endpoint);
    if (c->endpoint == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    c->zctx = zmq_ctx_new();
    if (c->zctx == NULL)
        return NULL;
    /* One I/O thread is plenty for one socket; the context never blocks
     * at termination (every socket lingers 0 anyway). */
    (void)zmq_ctx_set(c->zctx, ZMQ_IO_THREADS, 1);
    (void)zmq_ctx_set(c->zctx, ZMQ_BLOCKY, 0);
    c->next_id = 1;
    if (sock_open(c) != 0)
        return NULL; /* errno from zmq_socket or zmq_connect */
    return c;
}

CONNREP_API connrep_client *connrep_open(const char *endpoint, int timeout_ms)
{
    if (endpoint == NULL) {
        errno = EINVAL;
        return NULL;
    }
    connrep_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : CONNREP_DEFAULT_TIMEOUT_MS;
    connrep_client *ok;
    if (strncmp(endpoint, "shm:", 4) == 0)
        ok = open_shm(c, endpoint + 4);
    else if (strncmp(endpoint, "ipc://", 6) == 0 || strncmp(endpoint, "tcp://", 6) == 0)
        ok = open_zmq(c, endpoint);
    else {
        errno = EINVAL;
        ok = NULL;
    }
    if (ok == NULL) {
        int e = errno;
        connrep_close(&c);
        errno = e;
    }
    return ok;
}

CONNREP_API int connrep_lookup(connrep_client *c, const char *id, size_t len, connrep_result *out)
{
    if (out == NULL)
        return CONNREP_EINVAL;
    if (c == NULL || !id_ok(id, len)) {
        results_clear(out, 1);
        return CONNREP_EINVAL;
    }
    if (c->kind == KIND_SHM) {
        int err = shm_check(c);
        if (err != 0) {
            results_clear(out, 1);
            return err;
        }
        shm_one(c->table, id, len, out);
        return 0;
    }
    connrep_id one = {.id = id, .len = len};
    return zmq_lookup(c, &one, 1, out);
}

CONNREP_API int connrep_lookup_batch(connrep_client *c, const connrep_id *ids, size_t n,
                                     connrep_result *out)
{
    if (n == 0)
        return 0;
    if (out == NULL)
        return CONNREP_EINVAL;
    bool ok = c != NULL && ids != NULL;
    for (size_t i = 0; ok && i < n; i++)
        ok = id_ok(ids[i].id, ids[i].len);
    if (!ok) {
        results_clear(out, n);
        return CONNREP_EINVAL;
    }
    if (c->kind == KIND_SHM) {
        int err = shm_check(c);
        if (err != 0) {
            results_clear(out, n);
            return err;
        }
        shm_batch(c->table, ids, n, out);
        return 0;
    }
    return zmq_lookup(c, ids, n, out);
}

CONNREP_API void connrep_close(connrep_client **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    connrep_client *c = *cp;
    if (c->sock != NULL)
        zmq_close(c->sock);
    if (c->zctx != NULL)
        zmq_ctx_term(c->zctx);
    crp_table_destroy(&c->table);
    free(c->ids);
    free(c->endpoint);
    free(c);
    *cp = NULL;
}
