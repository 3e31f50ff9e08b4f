/* Raw ZeroMQ baselines: see zbase.h. */
#define _DEFAULT_SOURCE

#include "zbase.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "bench.h"
#include "crp/wire.h"

const char *bench_zmq_version(void)
{
    static char v[32];
    if (v[0] == '\0') {
        int a, b, c;
        zmq_version(&a, &b, &c);
        snprintf(v, sizeof(v), "%d.%d.%d", a, b, c);
    }
    return v;
}

static void set_int(void *sock, int opt, int v)
{
    (void)zmq_setsockopt(sock, opt, &v, sizeof(v));
}

static void pause_us(unsigned us)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)us * 1000L};
    nanosleep(&ts, NULL);
}

/* A context like a separate process's: one I/O thread. */
static void *new_ctx(void)
{
    void *z = zmq_ctx_new();
    if (z != NULL) {
        (void)zmq_ctx_set(z, ZMQ_IO_THREADS, 1);
        /* Terminating must not wait for unsent messages. */
        (void)zmq_ctx_set(z, ZMQ_BLOCKY, 0);
    }
    return z;
}

/* ---- sink ------------------------------------------------------------------ */

static void *sink_main(void *arg)
{
    bench_sink *s = arg;
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (;;) {
        int n = zmq_msg_recv(&m, s->sock, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break; /* ETERM: stop */
        }
        atomic_store_explicit(&s->last_ns, bench_now_ns(), memory_order_relaxed);
        atomic_fetch_add_explicit(&s->bytes, (uint64_t)n, memory_order_relaxed); /* statistics */
        /* Publishes last_ns; pairs with the acquire in bench_sink_frames. */
        atomic_fetch_add_explicit(&s->frames, 1, memory_order_release);
    }
    zmq_msg_close(&m);
    zmq_close(s->sock);
    s->sock = NULL;
    return NULL;
}

bool bench_sink_start(bench_sink *s, const char *endpoint)
{
    memset(s, 0, sizeof(*s));
    s->zctx = new_ctx();
    if (s->zctx == NULL)
        return false;
    s->sock = zmq_socket(s->zctx, ZMQ_PULL);
    if (s->sock == NULL || zmq_bind(s->sock, endpoint) != 0) {
        fprintf(stderr, "connrep-bench: baseline sink bind %s: %s\n", endpoint,
                zmq_strerror(errno));
        bench_sink_stop(s);
        return false;
    }
    set_int(s->sock, ZMQ_LINGER, 0);
    if (pthread_create(&s->thread, NULL, sink_main, s) != 0) {
        bench_sink_stop(s);
        return false;
    }
    s->started = true;
    return true;
}

void bench_sink_stop(bench_sink *s)
{
    if (s->zctx == NULL)
        return;
    if (s->started) {
        zmq_ctx_shutdown(s->zctx);
        pthread_join(s->thread, NULL);
        s->started = false;
    } else if (s->sock != NULL) {
        zmq_close(s->sock);
        s->sock = NULL;
    }
    zmq_ctx_term(s->zctx);
    s->zctx = NULL;
}

uint64_t bench_sink_frames(bench_sink *s)
{
    return atomic_load_explicit(&s->frames, memory_order_acquire);
}

bool bench_sink_wait(bench_sink *s, uint64_t frames, double timeout_s, uint64_t *last_ns)
{
    uint64_t deadline = bench_now_ns() + (uint64_t)(timeout_s * 1e9);
    bool ok;
    while (!(ok = bench_sink_frames(s) >= frames) && bench_now_ns() < deadline)
        pause_us(100);
    *last_ns = atomic_load_explicit(&s->last_ns, memory_order_relaxed);
    return ok;
}

/* ---- echo ------------------------------------------------------------------ */

#define ECHO_PARTS 9 /* the engine keeps 8 envelope frames, then the body */

static void *echo_main(void *arg)
{
    bench_echo *e = arg;
    zmq_msg_t parts[ECHO_PARTS];
    for (int i = 0; i < ECHO_PARTS; i++)
        zmq_msg_init(&parts[i]);
    for (;;) {
        int n = 0;
        bool more = true, failed = false;
        while (more) {
            zmq_msg_t *m = &parts[n < ECHO_PARTS ? n : ECHO_PARTS - 1];
            if (zmq_msg_recv(m, e->sock, 0) < 0) {
                if (errno == EINTR)
                    continue;
                failed = true;
                break;
            }
            more = zmq_msg_more(m);
            if (n < ECHO_PARTS)
                n++;
        }
        if (failed)
            break; /* ETERM: stop */
        /* The body is the last frame: answer with a reply of the size the
         * engine would send for its id count, and its request id. */
        const unsigned char *body = zmq_msg_data(&parts[n - 1]);
        size_t blen = zmq_msg_size(&parts[n - 1]);
        size_t count = 0;
        if (blen >= CRP_LOOKUP_HEADER_SIZE)
            count = (size_t)body[12] | (size_t)body[13] << 8;
        if (count == 0 || count > CRP_LOOKUP_COUNT_MAX)
            count = 1;
        size_t rlen = CRP_REPLY_HEADER_SIZE + count * CRP_REPLY_RESULT_MIN_SIZE;
        if (blen >= CRP_LOOKUP_HEADER_SIZE)
            memcpy(e->reply + 8, body + 8, 4);
        e->reply[12] = (unsigned char)(count & 0xffu);
        e->reply[13] = (unsigned char)(count >> 8);
        /* Envelope frames go back as they came (moved, no copy), as the
         * engine's server does; then the reply, copied in. */
        for (int i = 0; i < n - 1; i++)
            (void)zmq_msg_send(&parts[i], e->sock, ZMQ_SNDMORE);
        (void)zmq_send(e->sock, e->reply, rlen, 0);
        atomic_fetch_add_explicit(&e->requests, 1, memory_order_relaxed); /* statistics */
    }
    for (int i = 0; i < ECHO_PARTS; i++)
        zmq_msg_close(&parts[i]);
    zmq_close(e->sock);
    e->sock = NULL;
    return NULL;
}

bool bench_echo_start(bench_echo *e, const char *const *endpoints, size_t n)
{
    memset(e, 0, sizeof(*e));
    /* One valid reply of the largest size: every result "active". */
    size_t cap = crp_reply_max_size(CRP_LOOKUP_COUNT_MAX, false);
    e->reply = malloc(cap);
    if (e->reply == NULL)
        return false;
    crp_reply_writer w;
    crp_reply_begin(&w, e->reply, cap, 0, 1);
    for (unsigned i = 0; i < CRP_LOOKUP_COUNT_MAX; i++)
        crp_reply_add(&w, 1, 0, 0, NULL);
    crp_reply_finish(&w);

    e->zctx = new_ctx();
    if (e->zctx == NULL)
        goto fail;
    e->sock = zmq_socket(e->zctx, ZMQ_ROUTER);
    if (e->sock == NULL)
        goto fail;
    set_int(e->sock, ZMQ_LINGER, 0);
    for (size_t i = 0; i < n && i < BENCH_ECHO_BINDS; i++) {
        if (zmq_bind(e->sock, endpoints[i]) != 0) {
            fprintf(stderr, "connrep-bench: baseline echo bind %s: %s\n", endpoints[i],
                    zmq_strerror(errno));
            goto fail;
        }
        size_t len = sizeof(e->bound[i]);
        if (zmq_getsockopt(e->sock, ZMQ_LAST_ENDPOINT, e->bound[i], &len) != 0)
            snprintf(e->bound[i], sizeof(e->bound[i]), "%s", endpoints[i]);
        e->nbound++;
    }
    if (pthread_create(&e->thread, NULL, echo_main, e) != 0)
        goto fail;
    e->started = true;
    return true;
fail:
    bench_echo_stop(e);
    return false;
}

void bench_echo_stop(bench_echo *e)
{
    if (e->zctx != NULL) {
        if (e->started) {
            zmq_ctx_shutdown(e->zctx);
            pthread_join(e->thread, NULL);
            e->started = false;
        } else if (e->sock != NULL) {
            zmq_close(e->sock);
            e->sock = NULL;
        }
        zmq_ctx_term(e->zctx);
        e->zctx = NULL;
    }
    free(e->reply);
    e->reply = NULL;
}

/* ---- rt ---------------------------------------------------------------------- */

bool bench_rt_open(bench_rt *c, const char *endpoint)
{
    memset(c, 0, sizeof(*c));
    c->zctx = new_ctx();
    if (c->zctx == NULL)
        return false;
    c->sock = zmq_socket(c->zctx, ZMQ_DEALER);
    if (c->sock == NULL || zmq_connect(c->sock, endpoint) != 0) {
        fprintf(stderr, "connrep-bench: baseline client connect %s: %s\n", endpoint,
                zmq_strerror(errno));
        bench_rt_close(c);
        return false;
    }
    set_int(c->sock, ZMQ_LINGER, 0);
    set_int(c->sock, ZMQ_SNDTIMEO, 2000);
    set_int(c->sock, ZMQ_RCVTIMEO, 2000);
    /* A one-byte-count request: the echo answers anything. */
    unsigned char req[CRP_LOOKUP_HEADER_SIZE + 2];
    crp_lookup_id one = {.id = "x", .len = 1};
    size_t len = crp_lookup_encode_req(req, sizeof(req), 0, 1, &one, 1);
    uint64_t deadline = bench_now_ns() + 5000000000u;
    while (bench_now_ns() < deadline) {
        if (bench_rt_call(c, req, len) > 0)
            return true;
    }
    fprintf(stderr, "connrep-bench: baseline echo at %s does not answer\n", endpoint);
    bench_rt_close(c);
    return false;
}

int bench_rt_call(bench_rt *c, const void *req, size_t len)
{
    if (zmq_send(c->sock, req, len, 0) != (int)len)
        return -1;
    zmq_msg_t m;
    zmq_msg_init(&m);
    int n;
    while ((n = zmq_msg_recv(&m, c->sock, 0)) < 0 && errno == EINTR)
        ;
    zmq_msg_close(&m);
    return n;
}

void bench_rt_close(bench_rt *c)
{
    if (c->sock != NULL)
        zmq_close(c->sock);
    c->sock = NULL;
    if (c->zctx != NULL)
        zmq_ctx_term(c->zctx);
    c->zctx = NULL;
}
