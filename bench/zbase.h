/* Raw ZeroMQ baselines: the same sockets, transports and message sizes as
 * the engine's paths, with no engine work behind them, each in a context of
 * its own (one I/O thread, as a separate process would have).
 *
 *   sink  a PULL socket on a thread that receives and discards frames: the
 *         baseline of the feed (PUSH -> PULL of the same frames);
 *   echo  a ROUTER socket on a thread that answers every request at once
 *         with a reply of the size the engine would send (docs/protocol.md
 *         2.2: 14 bytes plus 12 per id, no text), so a client sees the same
 *         bytes on the wire in both directions: the baseline of a lookup
 *         round trip;
 *   rt    the client side of the echo: one DEALER, one request in flight,
 *         like libconnrep's connrep_lookup().
 *
 * Each server thread owns its socket; stop shuts the context down, which
 * ends the thread's blocking receive, and joins it.
 */
#ifndef BENCH_ZBASE_H
#define BENCH_ZBASE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* libzmq's version as "4.3.4" (a static string). */
const char *bench_zmq_version(void);

/* ---- sink ------------------------------------------------------------------ */

typedef struct bench_sink {
    void *zctx;
    void *sock;
    pthread_t thread;
    bool started;
    /* Written by the sink thread: last_ns (relaxed) before frames
     * (release), so a reader that sees a frame count (acquire) sees a
     * last_ns at least as recent as that frame. */
    _Atomic uint64_t frames;
    _Atomic uint64_t bytes;   /* statistics only */
    _Atomic uint64_t last_ns; /* bench_now_ns() of the last receive */
} bench_sink;

/* Binds a PULL socket to `endpoint` and starts the thread. */
bool bench_sink_start(bench_sink *s, const char *endpoint);
void bench_sink_stop(bench_sink *s);
uint64_t bench_sink_frames(bench_sink *s);

/* Waits (polling every 100 us) until the sink has received `frames`
 * frames in all, or timeout_s passed; stores the time of the last receive.
 * True when they all arrived. */
bool bench_sink_wait(bench_sink *s, uint64_t frames, double timeout_s, uint64_t *last_ns);

/* ---- echo ------------------------------------------------------------------ */

#define BENCH_ECHO_BINDS 4

typedef struct bench_echo {
    void *zctx;
    void *sock;
    pthread_t thread;
    bool started;
    char bound[BENCH_ECHO_BINDS][256]; /* the endpoints, wildcards resolved */
    size_t nbound;
    unsigned char *reply;      /* a valid CRR1 reply with 4096 results, reused */
    _Atomic uint64_t requests; /* statistics only */
} bench_echo;

/* Binds a ROUTER to each endpoint (e.g. "tcp://127.0.0.1:*") and starts the
 * thread. */
bool bench_echo_start(bench_echo *e, const char *const *endpoints, size_t n);
void bench_echo_stop(bench_echo *e);

/* ---- rt: the echo's client --------------------------------------------------- */

typedef struct bench_rt {
    void *zctx;
    void *sock;
} bench_rt;

/* A DEALER in a context of its own, connected to endpoint; waits (up to
 * 5 s) until one round trip succeeded. */
bool bench_rt_open(bench_rt *c, const char *endpoint);
/* Sends req and waits for one reply (up to 2 s). Returns the reply's size,
 * or -1. */
int bench_rt_call(bench_rt *c, const void *req, size_t len);
void bench_rt_close(bench_rt *c);

#endif
