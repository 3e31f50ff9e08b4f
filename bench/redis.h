/* The Redis baseline: what an operator would run instead of connrep for
 * the same lookup and counter workload.
 *
 * The bench starts Debian's redis-server itself, on a unix socket in a
 * private temp dir, with persistence off (--save '' --appendonly no) and no
 * TCP port, and drives it with hiredis from the calling thread:
 *
 *   bench_redis r;
 *   if (!bench_redis_available(why, sizeof(why)))  // skip, say why
 *   bench_redis_start(&r);                 // temp dir, spawn, wait ready
 *   bench_redis_fill(&r, ids, n, states);  // SET id state, pipelined
 *   bench_redis_run(&r, "GET", ...);       // timed, depth 1 or 64
 *   bench_redis_stop(&r);                  // SIGTERM, wait, SIGKILL; rm dir
 *
 * redis-server gets SIGTERM if the bench dies (PR_SET_PDEATHSIG), so an
 * aborted run does not leave it behind; bench_redis_stop is idempotent and
 * every scenario calls it on its error paths too. Built without hiredis
 * (pkg-config found none), bench_redis_available() says so and everything
 * else fails. Functions are for one thread at a time.
 */
#ifndef BENCH_REDIS_H
#define BENCH_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hist.h"

typedef struct bench_redis {
    char dir[128];    /* the temp dir, removed by stop */
    char sock[160];   /* <dir>/redis.sock */
    char log[160];    /* <dir>/redis.log */
    char version[32]; /* redis_version from INFO, or "" */
    pid_t pid;        /* 0 when not running */
    void *ctx;        /* redisContext */
} bench_redis;

/* The redis-server binary: $REDIS_SERVER when set, else redis-server on
 * $PATH. */
const char *bench_redis_binary(void);

/* True when the Redis baseline can run: built with hiredis and a
 * redis-server found. Otherwise false with the reason in why. */
bool bench_redis_available(char *why, size_t len);

/* hiredis's version as "1.2.0" (a static string), or "none". */
const char *bench_hiredis_version(void);

/* Creates the temp dir, starts redis-server and connects (deadline 10 s).
 * False, with a line on stderr and nothing left running, on failure. */
bool bench_redis_start(bench_redis *r);

/* Disconnects, stops redis-server (SIGTERM; SIGKILL after 5 s) and removes
 * the temp dir. Idempotent; safe on a zeroed struct. */
void bench_redis_stop(bench_redis *r);

/* SET ids[i] (BENCH_GUID_LEN bytes each, back to back) to the one-byte
 * state states[i] ('0'..'3'), i < n, pipelined 1000 deep. */
bool bench_redis_fill(bench_redis *r, const char *ids, uint64_t n, const uint8_t *states);

/* Runs `cmd` ("GET" or "INCR") on keys ids[order[*cursor]], ... for about
 * `seconds`, `depth` commands in flight per round trip (1: no pipelining),
 * advancing *cursor (mod n). Records the picoseconds of each round trip
 * (depth commands) into *calls; adds the commands to *ops and the time to
 * *ns. False when Redis failed (a line on stderr). */
bool bench_redis_run(bench_redis *r, const char *cmd, const char *ids, const uint32_t *order,
                     uint64_t n, uint64_t *cursor, unsigned depth, double seconds,
                     bench_hist *calls, uint64_t *ops, uint64_t *ns);

/* One Redis measurement taken in several rounds: every round trip in
 * `calls`, and the best round's rate. On a virtual machine a round trip to
 * another process is bimodal (a few microseconds when the other vCPU is
 * awake, tens when it has to be woken from idle) and which mode a round
 * lands in drifts with the neighbours' load; the ratios the bench reports
 * use Redis's best round, which favours Redis. */
typedef struct bench_redis_acc {
    const char *cmd; /* "GET" or "INCR" */
    unsigned depth;  /* commands per round trip: 1, or the pipeline depth */
    bench_hist calls;
    uint64_t ops, ns;
    double best_per_s;   /* the highest of the rounds' depth / median */
    double median_per_s; /* depth / the median of every round trip */
} bench_redis_acc;

void bench_redis_acc_init(bench_redis_acc *a, const char *cmd, unsigned depth);

/* One round of bench_redis_run into *a. */
bool bench_redis_round(bench_redis *r, bench_redis_acc *a, const char *ids, const uint32_t *order,
                       uint64_t n, uint64_t *cursor, double seconds);

#endif
